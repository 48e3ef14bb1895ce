// gpu_bench's decode GEMV table (gpu_bench_gemv.cpp).
#pragma once
#include <cuda_runtime.h>

namespace ds::gpubench {
// Prints the table; hbm_gbs: the HBM ceiling measured in the same process (hbm_ceiling.h).
void bench_gemv_decode(cudaStream_t st, int num_sms, double hbm_gbs);
}  // namespace ds::gpubench
