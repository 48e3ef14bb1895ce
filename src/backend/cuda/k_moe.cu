// DeepSeek-V3 noaux_tc routing: sigmoid scores, bias for the choice only, group score = sum of the group's
// two best biased scores, keep the topk_group best groups, then the top_k experts by biased score;
// weights = unbiased scores renormalised x routed_scaling_factor. Ties go to the lower group / expert
// index (the CPU backend's stable sorts). Two forms with bitwise the same results:
//   block (up to kBlockMaxTokens tokens): one block per token, one expert per thread; every choice is a
//     rank (how many beat it), so the decode step's chain is a few shared-memory rounds, not top_k
//     serial argmax rounds;
//   warp (larger batches, where throughput counts): one warp per token, serial argmax rounds.
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kWarpsPerBlock = 4;
// The block form's limits: one block of E threads per token (a few times the warp form's instructions,
// so large batches keep the warp form); each thread scans its group once (per experts).
constexpr int kBlockMaxTokens = 512;
constexpr int kBlockMaxThreads = 1024;
constexpr int kBlockMaxPer = 64;

// Warp argmax: highest value, lowest index among equals. Returns the winning index (-1 if none).
__device__ __forceinline__ int warp_argmax(float v, int i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
    if (i2 >= 0 && (i < 0 || v2 > v || (v2 == v && i2 < i))) v = v2, i = i2;
  }
  return i;
}

__global__ void route_warp_kernel(const float* logits, const float* bias, int T, int E, int G, int topk_group,
                                  int top_k, bool norm, float scaling, int32_t* ids, float* weights) {
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

// Whether (v, j) is chosen before (x, i): the serial argmax order (higher value, then lower index).
__device__ __forceinline__ bool beats(float v, int j, float x, int i) { return v > x || (v == x && j < i); }

struct Cand {
  float b;  // biased score
  int e;    // expert
};

// The block form: thread e owns expert e of token blockIdx.x. The warp form's choices as ranks:
//  1. in-group rank r of each selectable expert (biased score > -inf: the serial scans never pick -inf or
//     NaN, so both become -inf here); the group's ranks 0 and 1 are its best two, the group score;
//  2. group rank = groups that beat it: kept when < topk_group (= the topk_group argmax rounds);
//  3. only an expert with r < kc = min(top_k, per) in a kept group can be among the top_k (one with r >= top_k
//     has top_k better ones in its group), so those candidates alone are ranked against each other: an
//     expert's rank among them is its selection round when < top_k, and >= top_k otherwise.
// Thread k < top_k then sums the chosen scores in rank order, as the serial rounds did.
// kPer: experts per group known at compile time (0: per_rt).
template <int kPer>
__global__ void __launch_bounds__(kBlockMaxThreads)
    route_block_kernel(const float* logits, const float* bias, int E, int G, int per_rt, int topk_group, int top_k,
                       bool norm, float scaling, int32_t* ids, float* weights) {
  const int per = kPer ? kPer : per_rt, kc = min(top_k, per), nslots = topk_group * kc;
  extern __shared__ float sm[];
  float* s_b = sm;                                            // [E] biased scores (-inf: never chosen)
  Cand* s_c = reinterpret_cast<Cand*>(sm + ((E + 1) & ~1));  // [nslots] candidates (-inf: empty slot)
  __shared__ float s_top[2 * 32];                             // each group's best two biased scores (G <= 32)
  __shared__ float s_w[kMoeMaxTopK];                          // by selection round: the unbiased score
  __shared__ int s_sel[kMoeMaxTopK];                          //   and the expert (-1: none)
  const int e = threadIdx.x, t = blockIdx.x;
  const bool live = e < E;
  const float be = live ? bias[e] : 0.f;  // a weight: read before the wait (pdl.cuh)
  pdl_prologue();
  float s = 0.f, b = -INFINITY;
  if (live) {
    s = 1.0f / (1.0f + expf(-logits[size_t(t) * E + e]));
    const float x = be + s;  // the warp form's bias + sg, the same rounding
    b = x > -INFINITY ? x : -INFINITY;
    s_b[e] = b;
  }
  for (int q = e; q < nslots; q += blockDim.x) s_c[q] = {-INFINITY, 0};
  for (int q = e; q < 2 * G; q += blockDim.x) s_top[q] = -INFINITY;
  if (e < top_k) s_sel[e] = -1;
  __syncthreads();
  const int g = live ? e / per : 0, g0 = g * per;
  int r = 1 << 30;  // in-group rank (this large: not selectable)
  if constexpr (kPer == 32) {
    // The group is this warp (E = 32 G threads): its ties to the lower lanes in one match, then a plain
    // count (b is never -0, NaN became -inf: bitwise equal is ==).
    const unsigned ties = __match_any_sync(0xffffffffu, b) & ((1u << (e & 31)) - 1u);
    if (b > -INFINITY) {
      r = __popc(ties);
#pragma unroll
      for (int j = 0; j < 32; ++j) r += s_b[g0 + j] > b;
    }
  } else if (live && b > -INFINITY) {
    r = 0;
#pragma unroll 8
    for (int j = 0; j < per; ++j) r += beats(s_b[g0 + j], g0 + j, b, e);
  }
  if (r < 2) s_top[2 * g + r] = b;
  __syncthreads();
  bool cand = false;
  if (r < kc) {
    // Group scores as the warp form adds them (best + second best; the best alone for one-expert groups).
    auto score = [&](int h) { return per >= 2 ? s_top[2 * h] + s_top[2 * h + 1] : s_top[2 * h]; };
    const float mine = score(g);
    int rg = 0;
    for (int h = 0; h < G; ++h) rg += beats(score(h), h, mine, g);
    if (rg < topk_group) {
      cand = true;
      s_c[rg * kc + r] = {b, e};
    }
  }
  __syncthreads();
  if (cand) {
    int rank = 0;
    for (int q = 0; q < nslots; ++q) rank += beats(s_c[q].b, s_c[q].e, b, e);
    if (rank < top_k) s_sel[rank] = e, s_w[rank] = s;
  }
  __syncthreads();
  if (e < top_k) {
    float sum = 0.f;
    for (int k = 0; k < top_k; ++k)
      if (s_sel[k] >= 0) sum += s_w[k];  // in selection order, as the warp form and the CPU backend sum
    const int w = s_sel[e];
    float wgt = w >= 0 ? s_w[e] : 0.f;
    if (norm) wgt /= (sum + 1e-20f);
    ids[size_t(t) * top_k + e] = w >= 0 ? w : 0;
    weights[size_t(t) * top_k + e] = wgt * scaling;
  }
}
}  // namespace

MoeRouteForm launch_moe_route(const float* logits, const float* bias, int T, int E, int n_group, int topk_group,
                              int top_k, bool norm, float scaling, int32_t* ids, float* weights, cudaStream_t st,
                              MoeRouteForm form) {
  const int per = E / n_group;
  const bool block_ok = E <= kBlockMaxThreads && per <= kBlockMaxPer && top_k <= kMoeMaxTopK && n_group <= 32;
  if (form == MoeRouteForm::Auto) form = block_ok && T <= kBlockMaxTokens ? MoeRouteForm::Block : MoeRouteForm::Warp;
  if (!block_ok) form = MoeRouteForm::Warp;
  if (T == 0) return form;
  if (form == MoeRouteForm::Block) {
    const int threads = (E + 31) / 32 * 32;
    const int nslots = topk_group * (top_k < per ? top_k : per);
    const size_t smem = size_t((E + 1) & ~1) * sizeof(float) + size_t(nslots) * sizeof(Cand);
    if (per == 32)  // DeepSeek-V3's 256 experts in 8 groups
      launch_k(route_block_kernel<32>, unsigned(T), threads, smem, st, logits, bias, E, n_group, per, topk_group,
               top_k, norm, scaling, ids, weights);
    else
      launch_k(route_block_kernel<0>, unsigned(T), threads, smem, st, logits, bias, E, n_group, per, topk_group,
               top_k, norm, scaling, ids, weights);
    return form;
  }
  const size_t smem = size_t(kWarpsPerBlock) * 2 * E * sizeof(float);
  launch_k(route_warp_kernel, unsigned((T + kWarpsPerBlock - 1) / kWarpsPerBlock), kWarpsPerBlock * 32, smem, st,
           logits, bias, T, E, n_group, topk_group, top_k, norm, scaling, ids, weights);
  return form;
}

}  // namespace ds::backend::cuda
