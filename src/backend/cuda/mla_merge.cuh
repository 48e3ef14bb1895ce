// The merge of an MLA's split-K partials (MlaArgs::part_o / part_m / part_l): for one (token, head) row,
// out = sum_s w_s o_s / L with w_s = exp(m_s - M), M = max_s m_s and L = sum_s w_s l_s (a split that saw no
// key has m_s = -inf and counts nothing). Shared by mla_combine (k_attention.cu) and the absorption that
// merges while it stages its activations (k_head_gemv.cu), with explicit roundings so that both produce the
// same bits.
#pragma once
#include <cuda_runtime.h>

#include <cmath>

namespace ds::backend::cuda {

// From the row's maxima ms[0..n) and sums ls[0..n): the weights into ws (may alias ls) and 1 / L (0 if no
// split saw a key). One thread's work (n is small: the splits of one row).
__device__ __forceinline__ float mla_merge_weights(const float* ms, const float* ls, float* ws, int n) {
  float M = -INFINITY;
  for (int s = 0; s < n; ++s) M = fmaxf(M, ms[s]);
  float L = 0.f;
  for (int s = 0; s < n; ++s)
    if (ms[s] != -INFINITY) L = __fmaf_rn(expf(ms[s] - M), ls[s], L);
  for (int s = 0; s < n; ++s) ws[s] = ms[s] != -INFINITY ? expf(ms[s] - M) : 0.f;
  return L > 0.f ? 1.0f / L : 0.f;
}

// Four consecutive columns of the merged row: po points at split 0's float4, `stride` float4s apart per split.
// UNROLL: splits whose loads are in flight together (registers; the result does not depend on it).
template <int UNROLL = 8>
__device__ __forceinline__ float4 mla_merge_float4(const float4* po, size_t stride, const float* ws, int n, float inv) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll UNROLL
  for (int s = 0; s < n; ++s)
    if (ws[s] != 0.f) {
      const float4 x = po[size_t(s) * stride];
      v.x = __fmaf_rn(ws[s], x.x, v.x), v.y = __fmaf_rn(ws[s], x.y, v.y);
      v.z = __fmaf_rn(ws[s], x.z, v.z), v.w = __fmaf_rn(ws[s], x.w, v.w);
    }
  return make_float4(__fmul_rn(v.x, inv), __fmul_rn(v.y, inv), __fmul_rn(v.z, inv), __fmul_rn(v.w, inv));
}

}  // namespace ds::backend::cuda
