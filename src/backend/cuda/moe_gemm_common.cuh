// The grouped decode MoE GEMMs' (k_moe_gemm.cu) fast-mode f16 step and block epilogue. (Two forms that
// staged the weights through shared memory - a producer warp with bulk copies, and per-warp cp.async
// rings - shared these and were bitwise equal; both measured 14-95% slower and were removed: docs/PERF.md,
// session 20.)
#pragma once
#include <cuda_fp16.h>

#include "backend/cuda/kernels.h"
#include "backend/cuda/sync_sm90.cuh"
#include "backend/cuda/tf32_mma.cuh"

namespace ds::backend::cuda {

constexpr int kMoeWarps = 8;  // warps that compute (the K split of a block)

// One 64-column step in f16 (MoeGemmArgs::f16_x): rows g, g + 8 of each matrix (wa[mi][u], wb[mi][u])
// against the 16 activations xv of this lane's slot, times the matrices' block scales sc, into acc. The
// step's 64 activations of slot g (lanes t = 0..3) are multiplied by a power of two that puts their largest
// magnitude in [2^14, 2^15); four m16n8k16 per matrix, two chains each.
template <int NM, int U>
__device__ __forceinline__ void moe_step_f16(const Row16<int(WType::FP8)> (&wa)[NM][U],
                                             const Row16<int(WType::FP8)> (&wb)[NM][U], int u, const float (&xv)[16],
                                             int t, const float (&sc)[NM], float (&acc)[NM][4]) {
  uint32_t amax = 0;
#pragma unroll
  for (int q = 0; q < 16; ++q) amax = max(amax, __float_as_uint(xv[q]) & 0x7fffffffu);
  amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  amax = max(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  const int E = min(max(268 - int(amax >> 23), 1), 253);
  const float s = __uint_as_float(uint32_t(E) << 23), inv = __uint_as_float(uint32_t(254 - E) << 23);
  uint32_t b[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) {
    const __half2 h = __floats2half2_rn(xv[2 * q] * s, xv[2 * q + 1] * s);
    b[q] = *reinterpret_cast<const uint32_t*>(&h);
  }
  float d[NM][2][4];
#pragma unroll
  for (int mi = 0; mi < NM; ++mi)
#pragma unroll
    for (int q = 0; q < 4; ++q) d[mi][0][q] = d[mi][1][q] = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int mi = 0; mi < NM; ++mi)
      mma_f16(d[mi][i & 1], wa[mi][u].half2_bits(2 * i), wb[mi][u].half2_bits(2 * i),
              wa[mi][u].half2_bits(2 * i + 1), wb[mi][u].half2_bits(2 * i + 1), b[2 * i], b[2 * i + 1]);
  // d: slots 2t and 2t + 1, whose scales lanes 8t and 8t + 4 hold.
  const float i0 = __shfl_sync(0xffffffffu, inv, 8 * t), i1 = __shfl_sync(0xffffffffu, inv, 8 * t + 4);
#pragma unroll
  for (int mi = 0; mi < NM; ++mi) {
    acc[mi][0] = fmaf(sc[mi] * i0, d[mi][0][0] + d[mi][1][0], acc[mi][0]);
    acc[mi][1] = fmaf(sc[mi] * i1, d[mi][0][1] + d[mi][1][1], acc[mi][1]);
    acc[mi][2] = fmaf(sc[mi] * i0, d[mi][0][2] + d[mi][1][2], acc[mi][2]);
    acc[mi][3] = fmaf(sc[mi] * i1, d[mi][0][3] + d[mi][1][3], acc[mi][3]);
  }
}

// The staged forms (bulk, ring): the weight row that producer lane `lane` copies of an item of expert e at
// row block n0 — matrix slot lane / 16 (gate or up for the gated kernel; rows n0 and n0 + 16 of down for
// PAIR), row lane % 16; a row past N takes row n0 (its outputs are not written).
template <bool GATED, bool PAIR>
__device__ __forceinline__ const uint8_t* moe_lane_weight_row(const MoeGemmArgs& a, const MoeExpertPtrs& ex, int n0,
                                                              int lane) {
  const int mi = lane / 16;
  int n = n0 + (PAIR ? 16 * mi : 0) + lane % 16;
  if (n >= a.N) n = n0;
  // Constant indices only: a runtime index into the parameter's struct would copy it to local memory.
  const void* w = GATED ? (mi == 0 ? ex.w[0] : ex.w[1]) : ex.w[2];
  return static_cast<const uint8_t*>(w) + size_t(n) * a.K;
}

// The staged forms: a lane's 16 activations from shared memory, where xs is its 16 floats (four 16-byte
// chunks) in a row laid out with the 32-mod-128 pitch; chunk i is read in the order i ^ sw_x (sw_x = t / 2
// mod 2), which keeps the 8 lanes of a load phase on disjoint banks, and put back in place.
__device__ __forceinline__ void moe_load_x16_staged(const float4* xs, int sw_x, float (&xv)[16]) {
  float4 v[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = xs[i ^ sw_x];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float4 f = sw_x ? v[i ^ 1] : v[i];
    xv[4 * i] = f.x, xv[4 * i + 1] = f.y, xv[4 * i + 2] = f.z, xv[4 * i + 3] = f.w;
  }
}

// The block's epilogue for its rows (n0) x the tile's slots: acc through shared memory, the 8 warps summed
// in a fixed order, SwiGLU for the gated kernel (else each matrix slot is 16 more rows of the one matrix:
// PAIR); 16 consecutive outputs of a slot per 16 threads. The computing warps are threads 0..255; BAR 0
// syncs the whole block, else named barrier BAR among those 256 (a block with a producer warp beside them).
template <bool GATED, bool PAIR, int BAR, int NM>
__device__ __forceinline__ void moe_epilogue(float (&part)[NM][kMoeWarps][16][kMoeTileRows + 1],
                                             const float (&acc)[NM][4], float* y, int N, int n0, int slot0, int rows) {
  constexpr int kTile = kMoeTileRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  // acc[mi]: (row g, slots 2t, 2t + 1), (row g + 8, the same slots).
#pragma unroll
  for (int mi = 0; mi < NM; ++mi) {
    part[mi][warp][g][2 * t] = acc[mi][0];
    part[mi][warp][g][2 * t + 1] = acc[mi][1];
    part[mi][warp][g + 8][2 * t] = acc[mi][2];
    part[mi][warp][g + 8][2 * t + 1] = acc[mi][3];
  }
  if constexpr (BAR == 0) __syncthreads();
  else named_bar_sync<BAR, kMoeWarps * 32>();
  if constexpr (PAIR) {
    static_assert(NM == 2 && 2 * 16 * kTile == kMoeWarps * 32, "one output per thread");
    const int mi = threadIdx.x / (16 * kTile), m = threadIdx.x % (16 * kTile) / 16, r = threadIdx.x % 16;
    const int n = n0 + 16 * mi + r;
    if (m < rows && n < N) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < kMoeWarps; ++w) v += part[mi][w][r][m];
      y[size_t(slot0 + m) * N + n] = v;
    }
  } else if (threadIdx.x < 16 * kTile) {
    const int m = threadIdx.x / 16, r = threadIdx.x % 16, n = n0 + r;
    if (m < rows && n < N) {
      float s[NM];
#pragma unroll
      for (int mi = 0; mi < NM; ++mi) {
        s[mi] = 0.f;
#pragma unroll
        for (int w = 0; w < kMoeWarps; ++w) s[mi] += part[mi][w][r][m];
      }
      float v = s[0];
      if constexpr (GATED) v = s[0] / (1.0f + expf(-s[0])) * s[1];  // silu(gate) * up, as silu_mul
      y[size_t(slot0 + m) * N + n] = v;
    }
  }
}

}  // namespace ds::backend::cuda
