// Attention inputs over scattered pages for the GPU op checks (defined in gpu_ops_check_attention.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace opcheck {

struct Scenario {
  ds::backend::AttnBatch ab;
  std::vector<int32_t> ctx, key_row0;
  ds::Tensor index;  // host I32 [T, K]
  int64_t T = 0, K = 0, rows = 0;
};

// Sequences with contexts ctx[s], the last n_new[s] positions being this step's queries; pages shuffled
// over a pool with spare pages. sparse_k > 0: each query attends to a random ascending subset of
// min(sparse_k, p + 1) earlier positions; else to every position 0..p.
// min_width: index rows at least this wide (-1 padded, as a graph-captured decode step passes them).
Scenario make_scenario(const std::vector<int32_t>& ctx, const std::vector<int32_t>& n_new, int32_t page_size,
                       int64_t sparse_k, int64_t min_width = 0);

}  // namespace opcheck
