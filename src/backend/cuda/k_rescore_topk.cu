// Backend::rescore_topk on the GPU (model/draft_head.h: the FP8 draft head's candidates rescored against
// the checkpoint's head). One block per logits row, three phases:
//   1. each thread keeps the kMax best (value, id) of its strided share of the row in registers, sorted
//      (a value enters only when it beats the thread's last one: ~V / threads compares, few inserts);
//   2. k rounds of a block-wide best-of-heads: the winner is the row's next best entry (every entry of
//      the row's top k is in its own thread's top kMax), and its thread pops it;
//   3. warp c computes the dot product of the row's input x with row cand[c] of the exact head in fp32;
//      then the row becomes -inf but for the k candidates, which get those values.
// Ties go to the lower id, as in argmax_rows and the host reference (backend/rescore_topk.cpp); the sums'
// order differs from the host's (strided lanes, then a shuffle tree): equal up to fp32 rounding.
#include <cuda_bf16.h>

#include <climits>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {
namespace {

constexpr int kThreads = 512, kWarps = kThreads / 32, kMax = 8;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ bool before(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename W>
__global__ void __launch_bounds__(kThreads) rescore_topk_kernel(float* logits, int V, const float* x, const W* w,
                                                                int H, int k) {
  __shared__ float red_v[kWarps];
  __shared__ int red_i[kWarps];
  __shared__ int cand[kMax];
  __shared__ float exact[kMax];
  pdl_prologue();
  float* row = logits + size_t(blockIdx.x) * V;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  // 1. this thread's best kMax, sorted (NaNs never enter: every comparison with them is false).
  float tv[kMax];
  int ti[kMax];
#pragma unroll
  for (int c = 0; c < kMax; ++c) tv[c] = -INFINITY, ti[c] = INT_MAX;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    float v = row[i];
    if (!before(v, i, tv[kMax - 1], ti[kMax - 1])) continue;
    int id = i;
#pragma unroll
    for (int c = 0; c < kMax; ++c)
      if (before(v, id, tv[c], ti[c])) {
        const float sv = tv[c];
        const int si = ti[c];
        tv[c] = v, ti[c] = id;
        v = sv, id = si;
      }
  }

  // 2. the row's top k, one block-wide best per round.
  for (int round = 0; round < k; ++round) {
    float bv = tv[0];
    int bi = ti[0];
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFull, bv, o);
      const int oi = __shfl_xor_sync(kFull, bi, o);
      if (before(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (lane == 0) red_v[warp] = bv, red_i[warp] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
      bv = red_v[0], bi = red_i[0];
      for (int q = 1; q < kWarps; ++q)
        if (before(red_v[q], red_i[q], bv, bi)) bv = red_v[q], bi = red_i[q];
      cand[round] = bi == INT_MAX ? -1 : bi;
    }
    __syncthreads();
    const int win = cand[round];
    if (win >= 0 && ti[0] == win) {
#pragma unroll
      for (int c = 0; c + 1 < kMax; ++c) tv[c] = tv[c + 1], ti[c] = ti[c + 1];
      tv[kMax - 1] = -INFINITY, ti[kMax - 1] = INT_MAX;
    }
  }

  // 3. the exact values, then the row rewritten.
  if (warp < k) {
    const int id = cand[warp];
    float s = 0.f;
    if (id >= 0) {
      const float* xr = x + size_t(blockIdx.x) * H;
      const W* wr = w + size_t(id) * H;
      for (int j = lane; j < H; j += 32) s = fmaf(xr[j], to_f32(wr[j]), s);
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(kFull, s, o);
    }
    if (lane == 0) exact[warp] = s;
  }
  __syncthreads();  // every read of the row is done
  for (int i = threadIdx.x; i < V; i += kThreads) row[i] = -INFINITY;
  __syncthreads();
  if (threadIdx.x < k && cand[threadIdx.x] >= 0) row[cand[threadIdx.x]] = exact[threadIdx.x];
}

}  // namespace

void launch_rescore_topk(float* logits, int R, int V, const float* x, const void* w, bool w_bf16, int H, int k,
                         cudaStream_t st) {
  if (R <= 0) return;
  if (w_bf16)
    launch_k(rescore_topk_kernel<__nv_bfloat16>, R, kThreads, 0, st, logits, V, x,
             static_cast<const __nv_bfloat16*>(w), H, k);
  else
    launch_k(rescore_topk_kernel<float>, R, kThreads, 0, st, logits, V, x, static_cast<const float*>(w), H, k);
}

}  // namespace ds::backend::cuda
