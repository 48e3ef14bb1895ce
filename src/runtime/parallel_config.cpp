#include "runtime/parallel_config.h"

#include "util/error.h"

namespace ds::runtime {

void ParallelConfig::validate() const {
  const char* later = "parallelism lands with the dist/ layer; this build serves one replica on one device";
  DS_CHECK(tp == 1, "--tp {}: tensor parallelism is not available yet ({}); use --tp 1", tp, later);
  DS_CHECK(dp == 1, "--dp {}: data parallelism is not available yet ({}); use --dp 1", dp, later);
  DS_CHECK(ep == 1, "--ep {}: expert parallelism is not available yet ({}); use --ep 1", ep, later);
  DS_CHECK(tp >= 1 && dp >= 1 && ep >= 1, "--tp, --dp and --ep must be >= 1 (got {}, {}, {})", tp, dp, ep);
  DS_CHECK(!dp_attention || tp % dp == 0, "--enable-dp-attention needs --dp to divide --tp (got dp {}, tp {})", dp, tp);
  DS_CHECK(ep == 1 || ep == tp, "--ep must be 1 or equal to --tp (got ep {}, tp {})", ep, tp);
  DS_CHECK(rank >= 0 && rank < world_size(), "rank {} outside a world of {}", rank, world_size());
  DS_CHECK(device_index >= 0, "device index must be >= 0, got {}", device_index);
}

std::string ParallelConfig::describe() const {
  return fmt::format("tp {}, dp {}, ep {}{}", tp, dp, ep, dp_attention ? ", dp attention" : "");
}

}  // namespace ds::runtime
