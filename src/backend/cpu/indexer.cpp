// The lightning indexer on the CPU: per-head ReLU scores weighted and summed, causal top-k; and
// DeepSeek's FP8 numerics (Hadamard rotation + e4m3 rounding with power-of-two scales).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "util/error.h"

namespace ds::backend::cpu {

Tensor CpuBackend::indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                                int64_t heads, int64_t head_dim, int64_t topk) {
  int64_t T = q.dim(0), max_ctx = 0;
  DS_CHECK(q.row_size() == heads * head_dim && w.row_size() == heads && k_pool.row_size() == head_dim,
           "indexer: q {}, w {}, k pool {} do not match {} heads x {}", q.describe(), w.describe(),
           k_pool.describe(), heads, head_dim);
  max_ctx = context_width(batch);
  int64_t K = std::min(topk, max_ctx);
  Tensor index = Tensor::empty({T, K}, DType::I32);
#pragma omp parallel
  {
    std::vector<float> scores;
    std::vector<int32_t> order;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < T; ++t) {
      int32_t p = batch.pos_of_token[t], seq = batch.seq_of_token[t];
      int32_t* out = index.i32() + t * K;
      std::fill(out, out + K, -1);
      if (p + 1 <= topk) {  // every earlier token is selected: dense causal, no scoring needed
        std::iota(out, out + p + 1, 0);
        continue;
      }
      scores.assign(size_t(p + 1), 0.0f);
      const float* qt = q.f32() + t * heads * head_dim;
      const float* wt = w.f32() + t * heads;
      for (int32_t j = 0; j <= p; ++j) {
        const float* kj = k_pool.f32() + int64_t(batch.slot(seq, j)) * head_dim;
        float s = 0;
        for (int64_t h = 0; h < heads; ++h) s += wt[h] * std::max(0.0f, dot(qt + h * head_dim, kj, head_dim));
        scores[j] = s;
      }
      order.resize(size_t(p + 1));
      std::iota(order.begin(), order.end(), 0);
      // Highest scores first; among equal scores the earlier position (deterministic).
      auto better = [&](int32_t a, int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
      std::nth_element(order.begin(), order.begin() + (topk - 1), order.end(), better);
      std::sort(order.begin(), order.begin() + topk);
      std::copy(order.begin(), order.begin() + topk, out);
    }
  }
  return index;
}

void CpuBackend::hadamard_fp8_round(Tensor& x, int64_t row_len) {
  int64_t n = row_len, rows = x.numel() / n;
  DS_CHECK(n > 0 && (n & (n - 1)) == 0 && x.numel() % n == 0, "Hadamard rows must be a power of two, got {}", n);
  const float norm = 1.0f / std::sqrt(float(n));
#pragma omp parallel for if (rows > 64)
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x.f32() + r * n;
    for (int64_t len = 1; len < n; len <<= 1)  // Sylvester order: H[i][j] = (-1)^popcount(i & j)
      for (int64_t i = 0; i < n; i += 2 * len)
        for (int64_t j = i; j < i + len; ++j) {
          float a = v[j], b = v[j + len];
          v[j] = a + b;
          v[j + len] = a - b;
        }
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) {
      v[i] *= norm;
      amax = std::max(amax, std::fabs(v[i]));
    }
    // ue8m0 scale: the power of two at or above amax / 448 (amax clamped to 1e-4 as DeepSeek does).
    int e;
    float m = std::frexp(std::max(amax, 1e-4f) / 448.0f, &e);
    float scale = std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
    for (int64_t i = 0; i < n; ++i) v[i] = fp8e4m3_to_f32(f32_to_fp8e4m3(v[i] / scale)) * scale;
  }
}

}  // namespace ds::backend::cpu
