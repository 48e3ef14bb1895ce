// DeepSeek-V3 MoE on the CPU: noaux_tc routing (sigmoid, bias for choice only, group-limited top-k) and
// SwiGLU experts applied to the tokens routed to them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "util/error.h"

namespace ds::backend::cpu {

void CpuBackend::moe_route(const Tensor& router_logits, const Tensor& bias, const MoeRouting& cfg, Tensor* ids,
                           Tensor* weights) {
  int64_t T = router_logits.dim(0), E = router_logits.dim(1), G = cfg.n_group, per_group = E / G;
  DS_CHECK(E % G == 0 && cfg.topk_group <= G && cfg.top_k <= cfg.topk_group * per_group,
           "moe routing: {} experts, {} groups, topk_group {}, top_k {} are inconsistent", E, G, cfg.topk_group,
           cfg.top_k);
  *ids = Tensor::empty({T, cfg.top_k}, DType::I32);
  *weights = Tensor::empty({T, cfg.top_k}, DType::F32);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < T; ++t) {
    const float* logit = router_logits.f32() + t * E;
    std::vector<float> s(E), b(E), group_score(G);
    for (int64_t e = 0; e < E; ++e) {
      s[e] = 1.0f / (1.0f + std::exp(-logit[e]));
      b[e] = s[e] + bias.f32()[e];
    }
    for (int64_t g = 0; g < G; ++g) {  // group score = sum of its two best biased scores
      std::vector<float> m(b.begin() + g * per_group, b.begin() + (g + 1) * per_group);
      std::partial_sort(m.begin(), m.begin() + std::min<int64_t>(2, per_group), m.end(), std::greater<>());
      group_score[g] = per_group >= 2 ? m[0] + m[1] : m[0];
    }
    std::vector<int64_t> gorder(G);
    std::iota(gorder.begin(), gorder.end(), 0);
    std::stable_sort(gorder.begin(), gorder.end(), [&](int64_t a, int64_t c) { return group_score[a] > group_score[c]; });
    std::vector<char> keep(G, 0);
    for (int i = 0; i < cfg.topk_group; ++i) keep[gorder[i]] = 1;
    for (int64_t e = 0; e < E; ++e)
      if (!keep[e / per_group]) b[e] = ninf;
    std::vector<int64_t> eorder(E);
    std::iota(eorder.begin(), eorder.end(), 0);
    std::stable_sort(eorder.begin(), eorder.end(), [&](int64_t a, int64_t c) { return b[a] > b[c]; });
    float sum = 0;
    for (int k = 0; k < cfg.top_k; ++k) sum += s[eorder[k]];
    for (int k = 0; k < cfg.top_k; ++k) {
      ids->i32()[t * cfg.top_k + k] = int32_t(eorder[k]);
      float wgt = s[eorder[k]];
      if (cfg.norm_topk_prob) wgt /= (sum + 1e-20f);
      weights->f32()[t * cfg.top_k + k] = wgt * cfg.routed_scaling_factor;
    }
  }
}

Tensor CpuBackend::moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const ExpertSet& set) {
  const std::vector<ExpertWeights>& experts = set.experts();
  int64_t T = x.dim(0), H = x.row_size(), k = ids.dim(1);
  Tensor y = Tensor::zeros({T, H}, DType::F32);
  // Tokens (and their routing weights) per expert, in token order.
  std::vector<std::vector<std::pair<int64_t, float>>> routed(experts.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      int32_t e = ids.i32()[t * k + j];
      if (e == -1) continue;  // another rank's expert (moe_local_ids)
      DS_CHECK(e >= 0 && size_t(e) < experts.size(), "expert id {} out of range", e);
      routed[e].push_back({t, weights.f32()[t * k + j]});
    }
  for (size_t e = 0; e < experts.size(); ++e) {
    if (routed[e].empty()) continue;
    int64_t n = int64_t(routed[e].size());
    Tensor xe = Tensor::empty({n, H}, DType::F32);
    for (int64_t i = 0; i < n; ++i) std::copy_n(x.f32() + routed[e][i].first * H, H, xe.f32() + i * H);
    Tensor act = silu_mul(linear(xe, experts[e].gate), linear(xe, experts[e].up));
    Tensor out = linear(act, experts[e].down);
    for (int64_t i = 0; i < n; ++i) axpy(routed[e][i].second, out.f32() + i * H, y.f32() + routed[e][i].first * H, H);
  }
  return y;
}

}  // namespace ds::backend::cpu

namespace ds::backend::cpu {

void CpuBackend::moe_local_ids(Tensor& ids, int32_t first, int32_t count) {
  int32_t* p = ids.i32();
  for (int64_t i = 0; i < ids.numel(); ++i) p[i] = p[i] >= first && p[i] < first + count ? p[i] - first : -1;
}

}  // namespace ds::backend::cpu
