#include "disagg/kv_transfer.h"

#include "util/error.h"

namespace ds::disagg {

std::unique_ptr<KvTransfer> make_kv_transfer(const std::string& backend) {
  if (backend == "ucx") return make_ucx_transfer();
  fail("--disaggregation-transfer-backend {}: not built; this dsserve moves KV over ucx (UCX: shared memory on "
       "one host, TCP or RDMA across hosts)", backend);
}

}  // namespace ds::disagg
