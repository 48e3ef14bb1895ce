// FP8 e4m3 quantisation: activations per token per 128 columns for the block-scaled GEMM, and the
// lightning indexer's Hadamard + FP8 rounding. Scales are powers of two (ue8m0, fp8_act.cuh).
#include "backend/cuda/fp8_act.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
// One warp per (token, 128-column block); 4 consecutive columns per lane. Tokens >= M are padding.
__global__ void quant_act_kernel(const float* __restrict__ x, int M, int Mp, int K, uint8_t* __restrict__ q,
                                 float* __restrict__ s, int s_pitch, bool m_fastest, float* __restrict__ dq) {
  pdl_prologue();
  const int kblocks = K / 128;
  const int item = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (item >= Mp * kblocks) return;
  const int m = item / kblocks, kb = item % kblocks;
  const size_t off = size_t(m) * K + size_t(kb) * 128 + lane * 4;
  float* sp = s + (m_fastest ? size_t(kb) * s_pitch + m : size_t(m) * s_pitch + kb);
  if (m >= M) {
    *reinterpret_cast<uint32_t*>(q + off) = 0u;
    if (lane == 0) *sp = 1.0f;
    return;
  }
  const float4 v = *reinterpret_cast<const float4*>(x + off);
  float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float sc = ue8m0_scale(amax);
  const uint8_t b0 = to_e4m3(v.x / sc), b1 = to_e4m3(v.y / sc), b2 = to_e4m3(v.z / sc), b3 = to_e4m3(v.w / sc);
  *reinterpret_cast<uint32_t*>(q + off) = uint32_t(b0) | uint32_t(b1) << 8 | uint32_t(b2) << 16 | uint32_t(b3) << 24;
  if (lane == 0) *sp = sc;
  if (dq) {
    float4 d;
    d.x = from_e4m3(b0) * sc, d.y = from_e4m3(b1) * sc, d.z = from_e4m3(b2) * sc, d.w = from_e4m3(b3) * sc;
    *reinterpret_cast<float4*>(dq + off) = d;
  }
}

// One block of n threads per row: the Sylvester-order Walsh-Hadamard butterflies of the CPU backend (same
// additions in the same order, so bit-identical), scale n^-1/2, one ue8m0 scale per row, e4m3 round trip.
__global__ void hadamard_kernel(float* x, int n) {
  pdl_prologue();
  extern __shared__ float v[];
  __shared__ float red[32];
  float* row = x + size_t(blockIdx.x) * n;
  const int i = threadIdx.x;  // blockDim.x = max(n, 32): lanes >= n only join the reductions
  if (i < n) v[i] = row[i];
  __syncthreads();
  for (int len = 1; len < n; len <<= 1) {
    if (i < n / 2) {
      const int j = (i / len) * 2 * len + (i % len);
      const float a = v[j], b = v[j + len];
      v[j] = a + b;
      v[j + len] = a - b;
    }
    __syncthreads();
  }
  const float norm = 1.0f / sqrtf(float(n));
  const float y = i < n ? v[i] * norm : 0.f;
  float amax = fabsf(y);
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (i % 32 == 0) red[i / 32] = amax;
  __syncthreads();
  amax = 0.f;
  for (int w = 0; w < int(blockDim.x) / 32; ++w) amax = fmaxf(amax, red[w]);
  const float sc = ue8m0_scale(amax);
  if (i < n) row[i] = from_e4m3(to_e4m3(y / sc)) * sc;
}

// The same for rows of n >= 32: a warp per row, E = n / 32 consecutive values per lane, 8 rows per block.
// Butterflies of span < E stay in a lane; wider ones pair lane l with lane l ^ (len / E), the lower lane
// taking a + b and the upper one a - b (a its partner's value): each output is the one addition or
// subtraction the CPU computes for it, so the result is bit-identical to the block kernel's and the CPU's.
// (The block kernel syncs its 128 threads 7 times per row; at an 8K prefill chunk the 524,288 query rows
// took 0.9 ms per layer that way.)
template <int E>
__global__ void hadamard_warp_kernel(float* x, int rows) {
  pdl_prologue();
  constexpr int n = 32 * E;
  const int lane = threadIdx.x % 32, r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  float* row = x + size_t(r) * n + lane * E;
  float v[E];
#pragma unroll
  for (int e = 0; e < E; ++e) v[e] = row[e];
#pragma unroll
  for (int len = 1; len < E; len <<= 1)
#pragma unroll
    for (int e = 0; e < E; ++e)
      if ((e & len) == 0) {
        const float a = v[e], b = v[e + len];
        v[e] = a + b;
        v[e + len] = a - b;
      }
#pragma unroll
  for (int span = 1; span < 32; span <<= 1) {
    const bool upper = (lane & span) != 0;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float p = __shfl_xor_sync(0xffffffffu, v[e], span);
      v[e] = upper ? p - v[e] : v[e] + p;
    }
  }
  const float norm = 1.0f / sqrtf(float(n));
  float amax = 0.f;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    v[e] *= norm;
    amax = fmaxf(amax, fabsf(v[e]));
  }
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float sc = ue8m0_scale(amax);
#pragma unroll
  for (int e = 0; e < E; ++e) row[e] = from_e4m3(to_e4m3(v[e] / sc)) * sc;
}
}  // namespace

void launch_quant_fp8_act(const float* x, int M, int Mp, int K, uint8_t* q, float* s, int s_pitch, bool m_fastest,
                          float* dq, cudaStream_t st) {
  const int items = Mp * (K / 128);
  if (items) launch_k(quant_act_kernel, (items + 7) / 8, 256, 0, st, x, M, Mp, K, q, s, s_pitch, m_fastest, dq);
}

void launch_hadamard_fp8_round(float* x, int rows, int n, cudaStream_t st) {
  if (!rows) return;
  const unsigned blocks = unsigned((rows + 7) / 8);
  switch (n) {
    case 32: return launch_k(hadamard_warp_kernel<1>, blocks, 256, 0, st, x, rows);
    case 64: return launch_k(hadamard_warp_kernel<2>, blocks, 256, 0, st, x, rows);
    case 128: return launch_k(hadamard_warp_kernel<4>, blocks, 256, 0, st, x, rows);
    case 256: return launch_k(hadamard_warp_kernel<8>, blocks, 256, 0, st, x, rows);
    default: launch_k(hadamard_kernel, rows, n < 32 ? 32 : n, n * sizeof(float), st, x, n);
  }
}

}  // namespace ds::backend::cuda
