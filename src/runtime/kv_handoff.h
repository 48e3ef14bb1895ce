// Prefill/decode disaggregation as the engine sees it (the transport is disagg/'s): a prefill server's
// engine hands each prefilled request's prompt KV (packed by runtime/kv_pack.h) and first token to
// `send`; a decode server's engine `expect`s a request's KV, parks the request on pages of its own, and
// takes what arrived (`take_arrivals`) at each step boundary. Rooms are SGLang's bootstrap_room: the id
// the router gives one generation on both servers.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "util/host_bytes.h"

namespace ds::runtime {

enum class DisaggMode : uint8_t { Null, Prefill, Decode };
const char* disagg_mode_name(DisaggMode m);  // "null", "prefill", "decode"

// Where a request's KV comes from (decode) or which room it is sent to (prefill): SGLang's bootstrap_host,
// bootstrap_port and bootstrap_room fields.
struct BootstrapRoom {
  std::string host;  // the prefill server's bootstrap host
  int port = 0;      // its --disaggregation-bootstrap-port
  uint64_t room = 0;
};

struct KvArrival {
  uint64_t room = 0;
  HostBytes packed;  // runtime/kv_pack.h; empty when `error` is set
  std::string error;            // the prefill side failed, or the transfer did
};

class KvHandoff {
 public:
  virtual ~KvHandoff() = default;
  virtual DisaggMode mode() const = 0;
  // Prefill: the packed KV of a prefilled request (or, with `error`, why it has none), for the decode
  // server that registers `room`. Never blocks; the data is dropped after the transfer timeout when no
  // decode server asks for it.
  virtual void send(const BootstrapRoom& room, HostBytes packed, std::string error = {}) = 0;
  // Decode: asks the prefill server at room.host:port for room's KV; it arrives through take_arrivals (an
  // unreachable prefill server arrives as an error). Never blocks.
  virtual void expect(const BootstrapRoom& room) = 0;
  // Decode: the request of `room` is gone (aborted, timed out); its KV, should it come, is dropped.
  virtual void forget(uint64_t room) = 0;
  virtual std::vector<KvArrival> take_arrivals() = 0;
  // Decode: where arriving KV is written (`alloc(bytes)`, called on the transport's thread): the engine lends
  // page-locked buffers, which its device copies without staging. Unset: plain memory.
  virtual void set_buffers(std::function<HostBytes(size_t bytes)> alloc) {}
  // Called (on any thread) when something arrived: the engine wakes up to take it.
  virtual void set_wakeup(std::function<void()> wake) = 0;
  // Seconds a transfer may take from the decode side's registration to the KV's arrival.
  virtual double timeout_s() const = 0;
};

}  // namespace ds::runtime
