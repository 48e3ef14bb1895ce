// gpu_bench's decode GEMV table (gpu_bench_gemv.cpp).
#pragma once
#include <cuda_runtime.h>

namespace ds::gpubench {
// Prints the table; hbm_gbs: the HBM ceiling measured in the same process (hbm_ceiling.h).
void bench_gemv_decode(cudaStream_t st, int num_sms, double hbm_gbs);
// The weights a layer reads from one x (q_a + kv_a + indexer wk; an MLP's gate + up) as separate launches
// and as one launch_gemv_group, at M = 1 and 8, mode 0 and the fast mode's 16 (gpu_bench gemv-group).
void bench_gemv_groups(cudaStream_t st, int num_sms, double hbm_gbs);
}  // namespace ds::gpubench
