// Builds without UCX (libucx-dev): prefill/decode disaggregation is refused with a clear error.
#include "disagg/kv_transfer.h"
#include "util/error.h"

namespace ds::disagg {

bool have_ucx() { return false; }

std::unique_ptr<KvTransfer> make_ucx_transfer() {
  fail("--disaggregation-mode: this dsserve was built without UCX (libucx-dev), which carries the KV between "
       "the prefill and the decode server");
}

}  // namespace ds::disagg
