// runtime::KvHandoff for `dsserve serve --disaggregation-mode prefill|decode` (SGLang's PD disaggregation).
//
// Bootstrap (small control messages, the project's framed TCP channel, dist/control_channel.h): the prefill
// server listens on --disaggregation-bootstrap-port. A decode server that gets a request with
// bootstrap_host/port/room connects there once per prefill server (PdHello: its KV transfer address), then
// sends PdRoom for each room it waits for. The prefill server matches a room's registration with the KV its
// engine packed for that room (whichever comes first waits, up to the transfer timeout) and sends the KV
// over the KvTransfer (UCX) tagged with the room; a prefill that failed answers PdFailed instead.
#pragma once
#include <memory>
#include <string>

#include "disagg/kv_transfer.h"
#include "runtime/kv_handoff.h"

namespace ds::disagg {

struct PdConfig {
  runtime::DisaggMode mode = runtime::DisaggMode::Null;
  std::string bootstrap_host = "127.0.0.1";  // prefill: where the bootstrap server listens
  int bootstrap_port = 8998;                 // prefill: 0 = any free port (bootstrap_port() tells which)
  std::string transfer_backend = "ucx";
  double timeout_s = 60;  // registration -> arrival (decode); packed KV kept for a decode server (prefill)
};

class PdHandoff : public runtime::KvHandoff {
 public:
  virtual int bootstrap_port() const = 0;  // prefill: the port listened on; decode: 0
};

std::unique_ptr<PdHandoff> make_pd_handoff(const PdConfig& cfg);

}  // namespace ds::disagg
