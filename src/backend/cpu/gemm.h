// fp32 GEMM kernels of the CPU backend.
#pragma once
#include <cstdint>

namespace ds::backend::cpu {
// y[M, N] = x[M, K] * W[N, K]^T   (row-major, ldx = ldw = K, ldy = N). Multi-threaded (OpenMP).
void gemm_xwt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K);
// The same on the calling thread only (for callers that parallelise over their own blocks). With M a
// multiple of 4 and N even every element goes through the one 4x2 register tile, so two equal rows of
// w give bitwise equal results (the indexer's ties rely on it).
void gemm_xwt_serial(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K);
// Dot product of two length-n vectors (SIMD).
float dot(const float* a, const float* b, int64_t n);
// y[0..n) += a * x[0..n)
void axpy(float a, const float* x, float* y, int64_t n);
}  // namespace ds::backend::cpu
