#include "runtime/parallel_config.h"

#include "util/error.h"

namespace ds::runtime {

void ParallelConfig::validate() const {
  DS_CHECK(tp >= 1 && dp >= 1 && ep >= 1, "--tp, --dp and --ep must be >= 1 (got {}, {}, {})", tp, dp, ep);
  DS_CHECK(!dp_attention || tp % dp == 0, "--enable-dp-attention needs --dp to divide --tp (got dp {}, tp {}): the DP groups split the tp ranks", dp, tp);
  DS_CHECK(!moe_dense_local || dp_attention,
           "--moe-dense-tp-size 1 needs --enable-dp-attention (dense layers then run inside each DP group)");
  DS_CHECK(ep == 1 || ep == tp, "--ep must be 1 or equal to --tp (got ep {}, tp {})", ep, tp);
  DS_CHECK(rank >= 0 && rank < world_size(), "rank {} outside a world of {}", rank, world_size());
  DS_CHECK(device_index >= 0, "device index must be >= 0, got {}", device_index);
}

std::string ParallelConfig::describe() const {
  return fmt::format("tp {}, dp {}, ep {}{}{}", tp, dp, ep, dp_attention ? ", dp attention" : "",
                     moe_dense_local ? ", dense MLP per DP group" : "");
}

}  // namespace ds::runtime
