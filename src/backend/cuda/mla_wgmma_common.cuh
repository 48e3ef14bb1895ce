// What the two wgmma forms of the absorbed sparse MLA attention share (k_mla_wgmma.cu, one block of keys a
// step; k_mla_wgmma_pair.cu, two): the block shape, the query's load into swizzled bf16 tiles, the scores'
// masking with their row maxima, and the output rows (normalised, or split-K partials for mla_combine).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/mma_bf16.cuh"

namespace ds::backend::cuda::mla_wgmma {

constexpr int HB = 64;           // heads per block: the wgmma M
constexpr int KS = 64;           // keys per block of keys (a step of the one-block form)
constexpr int kTile = 64 * 128;  // one operand tile: 64 rows x 128 bytes
constexpr int kMaxSmem = 232448;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Token t's query rows h0 .. h0 + 63 (D wide; fp32 rounded to bf16 here, or bf16 as they are: a.q_bf16) into
// 128-byte-swizzled [64 x 64] tiles at sq (column tile c / 8, row r, chunk (c % 8) ^ (r % 8)); heads past H
// are zeros (never written out). The 256 consumer threads (tid < 256) share the work. With a.q_async (bf16
// queries) the chunks go by cp.async, all of a thread's 18 (D = 576) in flight together, zero-filled past H;
// each thread waits for its own, and the caller's fence and barrier publish them to the tensor cores.
template <int D>
__device__ __forceinline__ void load_query_tiles(const MlaArgs& a, uint8_t* sq, int t, int h0, int tid) {
  constexpr int nch = D / 8;  // 16-byte chunks of a bf16 row
  if (a.q_bf16 && a.q_async) {
    const uint32_t sq_addr = static_cast<uint32_t>(__cvta_generic_to_shared(sq));
#pragma unroll
    for (int k = 0; k < (HB * nch + 255) / 256; ++k) {
      const int i = tid + 256 * k;
      if (i < HB * nch) {
        const int r = i / nch, c = i - r * nch;
        const bool ok = h0 + r < a.H;
        const uint4* src = reinterpret_cast<const uint4*>(a.q_bf16 + (size_t(t) * a.H + (ok ? h0 + r : 0)) * D) + c;
        cp_async16(sq_addr + (c >> 3) * kTile + r * 128 + (((c & 7) ^ (r & 7)) << 4), src, ok);
      }
    }
    cp_async_commit();  // wait_group counts committed groups only
    cp_async_wait<0>();
    return;
  }
  if (a.q_bf16) {
#pragma unroll 4
    for (int i = tid; i < HB * nch; i += 256) {
      const int r = i / nch, c = i - r * nch;
      uint4 v = make_uint4(0u, 0u, 0u, 0u);
      if (h0 + r < a.H) v = __ldg(reinterpret_cast<const uint4*>(a.q_bf16 + (size_t(t) * a.H + h0 + r) * D) + c);
      *reinterpret_cast<uint4*>(sq + (c >> 3) * kTile + r * 128 + (((c & 7) ^ (r & 7)) << 4)) = v;
    }
    return;
  }
#pragma unroll 4
  for (int i = tid; i < HB * nch; i += 256) {
    const int r = i / nch, c = i - r * nch;
    float4 x0 = make_float4(0.f, 0.f, 0.f, 0.f), x1 = x0;
    if (h0 + r < a.H) {
      const float4* src = reinterpret_cast<const float4*>(a.q + (size_t(t) * a.H + h0 + r) * D) + 2 * c;
      x0 = __ldg(src);
      x1 = __ldg(src + 1);
    }
    const uint4 v = make_uint4(pack_bf16(x0.x, x0.y), pack_bf16(x0.z, x0.w), pack_bf16(x1.x, x1.y),
                               pack_bf16(x1.z, x1.w));
    *reinterpret_cast<uint4*>(sq + (c >> 3) * kTile + r * 128 + (((c & 7) ^ (r & 7)) << 4)) = v;
  }
}

// A 64-head x 64-key block of scores (wgmma accumulator fragment) in log2 units with masked keys at -inf
// (ring entries < 0), and each of this thread's two rows' maxima over the block (a row's 64 keys lie in the
// 4 lanes of a quad).
__device__ __forceinline__ void mask_scores(float (&sc)[32], const int* rs, float sl2, int tq, float (&mx)[2]) {
  mx[0] = mx[1] = -INFINITY;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int2 kv = *reinterpret_cast<const int2*>(rs + 8 * j + 2 * tq);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const bool ok = ((q & 1) ? kv.y : kv.x) >= 0;
      sc[4 * j + q] = ok ? sc[4 * j + q] * sl2 : -INFINITY;
      mx[q >> 1] = fmaxf(mx[q >> 1], sc[4 * j + q]);
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
  }
}

// This thread's rows of O out (accumulator fragment: rows row0 + 8 rr, columns c0 + 8j (+1), c0 = col0 + 2 tq
// for this warpgroup's NH columns starting at col0): divided by the weight sum L[rr] when the key list is not
// split, else as split-K partials, with the row's natural-log max m[rr] and L[rr] written by `writes_ml`.
template <int DL, int NH, int NO>
__device__ __forceinline__ void store_output_rows(const MlaArgs& a, const float (&o)[NO], int split, int t, int h0,
                                                  int row0, int col0, int tq, const float (&L)[2],
                                                  const float (&m)[2], bool writes_ml) {
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int row = row0 + 8 * rr, h = h0 + row;
    if (h >= a.H) continue;
    const int c0 = col0 + 2 * tq;
    if (a.nsplit == 1) {
      const float inv = L[rr] > 0.f ? 1.0f / L[rr] : 0.f;
      if (a.out_bf16) {  // the bf16 hand-off to mla_absorb_out
        uint16_t* dst = a.out_bf16 + (size_t(t) * a.H + h) * DL + c0;
#pragma unroll
        for (int j = 0; j < NH / 8; ++j)
          *reinterpret_cast<uint32_t*>(dst + 8 * j) = pack_bf16(o[4 * j + 2 * rr] * inv, o[4 * j + 2 * rr + 1] * inv);
        continue;
      }
      float* dst = a.out + (size_t(t) * a.H + h) * DL + c0;
#pragma unroll
      for (int j = 0; j < NH / 8; ++j)
        *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j + 2 * rr] * inv, o[4 * j + 2 * rr + 1] * inv);
    } else {
      const size_t prow = (size_t(split) * a.T + t) * a.H + h;
      float* dst = a.part_o + prow * DL + c0;
#pragma unroll
      for (int j = 0; j < NH / 8; ++j)
        *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j + 2 * rr], o[4 * j + 2 * rr + 1]);
      if (writes_ml) a.part_m[prow] = m[rr], a.part_l[prow] = L[rr];
    }
  }
}

}  // namespace ds::backend::cuda::mla_wgmma
