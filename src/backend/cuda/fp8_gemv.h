// Decode-size FP8 block-scaled GEMM: y[M, N] = x[M, K] * dequant(W)[N, K]^T for small M (<= 8),
// where W is e4m3 with one fp32 scale per 128x128 block (DeepSeek's format, partial edge blocks
// allowed). x and y are bf16, accumulation fp32. Weight-streaming: each weight byte is read once.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ds::backend::cuda {

constexpr int kFp8GemvMaxM = 8;

// K must be a multiple of 16 (every DeepSeek GEMM input width is a multiple of 128).
void fp8_gemv(const __nv_bfloat16* x, int M, int K, const uint8_t* w, const float* w_scale, int N,
              __nv_bfloat16* y, cudaStream_t stream);

}  // namespace ds::backend::cuda
