// DeepSeek-V3 noaux_tc routing, one warp per token: sigmoid scores, bias for the choice only, group score
// = sum of the group's two best biased scores, keep the topk_group best groups, then the top_k experts
// by biased score; weights = unbiased scores renormalised x routed_scaling_factor. Ties go to the lower
// group / expert index (the CPU backend's stable sorts).
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kWarpsPerBlock = 4;

// Warp argmax: highest value, lowest index among equals. Returns the winning index (-1 if none).
__device__ __forceinline__ int warp_argmax(float v, int i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
    if (i2 >= 0 && (i < 0 || v2 > v || (v2 == v && i2 < i))) v = v2, i = i2;
  }
  return i;
}

__global__ void route_kernel(const float* logits, const float* bias, int T, int E, int G, int topk_group, int top_k,
                             bool norm, float scaling, int32_t* ids, float* weights) {
  extern __shared__ float sm[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarpsPerBlock + warp;
  float* s = sm + warp * 2 * E;
  float* b = s + E;
  // The bias is a weight: staged before the wait (pdl.cuh), the logits after it.
  for (int e = lane; e < E; e += 32) b[e] = bias[e];
  pdl_prologue();
  if (t >= T) return;
  const int per = E / G;
  for (int e = lane; e < E; e += 32) {
    const float sg = 1.0f / (1.0f + expf(-logits[size_t(t) * E + e]));
    s[e] = sg;
    b[e] += sg;  // sg + bias, the same rounding
  }
  __syncwarp();
  // Group scores (lane g < G): its best and second-best biased scores.
  float gs = -INFINITY;
  if (lane < G) {
    float m0 = -INFINITY, m1 = -INFINITY;
    for (int e = lane * per; e < (lane + 1) * per; ++e) {
      const float v = b[e];
      if (v > m0) m1 = m0, m0 = v;
      else if (v > m1) m1 = v;
    }
    gs = per >= 2 ? m0 + m1 : m0;
  }
  unsigned keep = 0;  // bit g: group g kept
  for (int i = 0; i < topk_group; ++i) {
    const bool cand = lane < G && !((keep >> lane) & 1u);
    const int g = warp_argmax(cand ? gs : -INFINITY, cand ? lane : -1);
    if (g >= 0) keep |= 1u << g;
  }
  for (int e = lane; e < E; e += 32)
    if (!((keep >> (e / per)) & 1u)) b[e] = -INFINITY;
  __syncwarp();
  float sum = 0.f;
  int chosen = -1;  // lane k < top_k (<= 32, checked by the caller): the k-th choice (a register, not an array)
  for (int k = 0; k < top_k; ++k) {
    float best = -INFINITY;
    int bi = -1;
    for (int e = lane; e < E; e += 32)
      if (b[e] > best) best = b[e], bi = e;  // strict: the lowest index among this lane's equals
    const int w = warp_argmax(best, bi);
    if (lane == k) chosen = w;
    if (w >= 0) {
      sum += s[w];  // in selection order, as the CPU backend sums
      if (lane == 0) b[w] = -INFINITY;
    }
    __syncwarp();
  }
  if (lane < top_k) {
    float wgt = chosen >= 0 ? s[chosen] : 0.f;
    if (norm) wgt /= (sum + 1e-20f);
    ids[size_t(t) * top_k + lane] = chosen >= 0 ? chosen : 0;
    weights[size_t(t) * top_k + lane] = wgt * scaling;
  }
}
}  // namespace

void launch_moe_route(const float* logits, const float* bias, int T, int E, int n_group, int topk_group, int top_k,
                      bool norm, float scaling, int32_t* ids, float* weights, cudaStream_t st) {
  if (T == 0) return;
  const size_t smem = size_t(kWarpsPerBlock) * 2 * E * sizeof(float);
  launch_k(route_kernel, unsigned((T + kWarpsPerBlock - 1) / kWarpsPerBlock), kWarpsPerBlock * 32, smem, st,
      logits, bias, T, E, n_group, topk_group, top_k, norm, scaling, ids, weights);
}

}  // namespace ds::backend::cuda
