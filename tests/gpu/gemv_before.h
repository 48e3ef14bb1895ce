// The pre-issue-18 decode GEMV (gemv_before.cu), for gpu_bench's before/after columns only.
#pragma once
#include <cuda_runtime.h>

#include "backend/cuda/kernels.h"

namespace ds::backend::cuda {
// M <= 8, FP8 or BF16 weights; the same contract as launch_gemv / gemv_ksplit had then.
int gemv_ksplit_before(const WeightRef& w, int num_sms);
void launch_gemv_before(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                        cudaStream_t st);
}  // namespace ds::backend::cuda
