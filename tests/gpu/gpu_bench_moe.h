// gpu_bench's MoE experts table (gpu_bench_moe.cpp).
#pragma once
#include <vector>

#include "gpu_bench_util.h"

namespace ds::gpubench {
// Prints the table for each token count in Ts; false when a path's output differs from the per-expert
// path's (or the grouped FP8 path was not taken).
bool bench_moe(const Ceilings& c, const std::vector<int>& Ts);
}  // namespace ds::gpubench
