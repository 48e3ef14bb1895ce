// The bulk path of prefill/decode disaggregation: moves one request's packed KV (runtime/kv_pack.h) from
// the prefill server to the decode server. An interface so that other transports (NIXL, CUDA IPC between
// GPUs of one node, RDMA writes straight into the decode side's pools) can be added beside UCX.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "util/host_bytes.h"

namespace ds::disagg {

class KvTransfer {
 public:
  virtual ~KvTransfer() = default;
  virtual std::string name() const = 0;
  // This end's address (opaque bytes), which the decode side gives the prefill side in the bootstrap.
  virtual std::string local_address() const = 0;
  // Sends `data` to the peer at `peer_address`, tagged with `room`. `done` runs once, on the transfer's
  // own thread: empty when the data has left (the peer's receiver has it or will), else the error. After
  // `timeout_s` the send is cancelled with an error.
  virtual void send(const std::string& peer_address, uint64_t room, HostBytes data, double timeout_s,
                    std::function<void(const std::string& error)> done) = 0;
  // Every message that arrives: (room, data), on the transfer's own thread. Set before the first arrives.
  virtual void set_receiver(std::function<void(uint64_t room, HostBytes data)> receive) = 0;
  // Where arriving messages are written: alloc(bytes), on the transfer's thread (unset or failing: plain memory).
  virtual void set_buffers(std::function<HostBytes(size_t bytes)> alloc) = 0;
};

bool have_ucx();
// UCX (ucp tag messages between workers; UCX picks shared memory on one host, TCP or RDMA across hosts).
// Throws when this dsserve was built without UCX or UCX cannot start.
std::unique_ptr<KvTransfer> make_ucx_transfer();
// "ucx" (the default) or "mooncake"/"nixl" (SGLang's other names: refused with a clear error).
std::unique_ptr<KvTransfer> make_kv_transfer(const std::string& backend);

}  // namespace ds::disagg
