// MLA on the CPU: the absorbed (latent-space) form used for every step, the expanded per-head form
// kept as its independent check, the dense causal expanded form of short prefills (K/V read in place
// from the kv_b product), and the weight absorption around them.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/kv_fp8_rows.h"
#include "util/error.h"

namespace ds::backend::cpu {

Tensor CpuBackend::mla_absorb_q(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                int64_t v_dim) {
  int64_t T = q.dim(0), qd = q.row_size() / heads, rope_dim = qd - nope_dim, Dl = kv_b.in_features;
  DS_CHECK(kv_b.out_features == heads * (nope_dim + v_dim), "kv_b_proj has {} rows, expected {}", kv_b.out_features,
           heads * (nope_dim + v_dim));
  Tensor out = Tensor::zeros({T, heads, Dl + rope_dim}, DType::F32);
  const float* W = kv_b.w.f32();
#pragma omp parallel for collapse(2) if (T * heads * nope_dim * Dl > (1 << 16))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q.f32() + (t * heads + h) * qd;
      float* o = out.f32() + (t * heads + h) * (Dl + rope_dim);
      const float* wuk = W + h * (nope_dim + v_dim) * Dl;  // W_UK[h]: rows [h*(Dn+Dv), +Dn)
      for (int64_t d = 0; d < nope_dim; ++d) axpy(qh[d], wuk + d * Dl, o, Dl);
      std::copy(qh + nope_dim, qh + qd, o + Dl);
    }
  return out;
}

Tensor CpuBackend::mla_absorb_out(const Tensor& o_lat, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                  int64_t v_dim) {
  int64_t T = o_lat.dim(0), Dl = kv_b.in_features;
  Tensor out = Tensor::empty({T, heads * v_dim}, DType::F32);
  const float* W = kv_b.w.f32();
#pragma omp parallel for collapse(2) if (T * heads * v_dim * Dl > (1 << 16))
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const float* o = o_lat.f32() + (t * heads + h) * Dl;
      const float* wuv = W + (h * (nope_dim + v_dim) + nope_dim) * Dl;  // W_UV[h]
      for (int64_t d = 0; d < v_dim; ++d) out.f32()[t * heads * v_dim + h * v_dim + d] = dot(o, wuv + d * Dl, Dl);
    }
  return out;
}

namespace {
// softmax(scores) in place over n entries (max-subtracted, fp32 like torch's softmax).
void softmax_inplace(float* s, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - m);
    sum += s[j];
  }
  for (int64_t j = 0; j < n; ++j) s[j] /= sum;
}

// The valid (non-negative) entries of index row t.
int64_t valid_count(const int32_t* row, int64_t K) {
  int64_t n = 0;
  while (n < K && row[n] >= 0) ++n;
  return n;
}
}  // namespace

Tensor CpuBackend::mla_attention_absorbed(const Tensor& q_abs, const Tensor& kv_pool, const Tensor& index,
                                          const AttnBatch& batch, int64_t latent_dim, float scale) {
  int64_t T = q_abs.dim(0), H = q_abs.dim(1), D = q_abs.dim(2), K = index.dim(1);
  // A U8 pool is packed FP8 (backend/kv_fp8.h): its rows are dequantised here, each once.
  const bool packed = kv_pool.dtype() == DType::U8;
  const KvFp8Layout layout = KvFp8Layout::latent(latent_dim, D - latent_dim);
  DS_CHECK(packed ? kv_pool.row_size() == layout.bytes() : kv_pool.row_size() == D,
           "absorbed attention: query width {} does not match the cache {}", D, kv_pool.describe());
  // Validate up front: nothing may throw inside the parallel region.
  std::vector<int32_t> used;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < K && index.i32()[t * K + j] >= 0; ++j) {
      DS_CHECK(index.i32()[t * K + j] <= batch.pos_of_token[t], "attention index {} is after the query position {}",
               index.i32()[t * K + j], batch.pos_of_token[t]);
      if (packed) used.push_back(batch.slot(batch.seq_of_token[t], index.i32()[t * K + j]));
    }
  const KvRows rows(kv_pool, packed ? &layout : nullptr, used);
  Tensor out = Tensor::zeros({T, H, latent_dim}, DType::F32);
#pragma omp parallel if (T * H * K * D > (1 << 16))
  {
    std::vector<float> scores(K);
    std::vector<const float*> keys(K);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int32_t* idx = index.i32() + t * K;
        int64_t n = valid_count(idx, K);
        int32_t seq = batch.seq_of_token[t];
        for (int64_t j = 0; j < n; ++j) keys[j] = rows.row(batch.slot(seq, idx[j]));
        const float* qh = q_abs.f32() + (t * H + h) * D;
        for (int64_t j = 0; j < n; ++j) scores[j] = dot(qh, keys[j], D) * scale;
        softmax_inplace(scores.data(), n);
        float* o = out.f32() + (t * H + h) * latent_dim;
        for (int64_t j = 0; j < n; ++j) axpy(scores[j], keys[j], o, latent_dim);
      }
  }
  return out;
}

Tensor CpuBackend::attention_expanded(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& index,
                                      const AttnBatch& batch, const std::vector<int32_t>& key_row0, float scale) {
  int64_t T = q.dim(0), H = q.dim(1), Dqk = q.dim(2), Dv = v.dim(2), K = index.dim(1);
  Tensor out = Tensor::zeros({T, H, Dv}, DType::F32);
#pragma omp parallel if (T * H * K * Dqk > (1 << 16))
  {
    std::vector<float> scores(K);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int32_t* idx = index.i32() + t * K;
        int64_t n = valid_count(idx, K);
        int64_t row0 = key_row0[batch.seq_of_token[t]];
        const float* qh = q.f32() + (t * H + h) * Dqk;
        for (int64_t j = 0; j < n; ++j) scores[j] = dot(qh, k.f32() + ((row0 + idx[j]) * H + h) * Dqk, Dqk) * scale;
        softmax_inplace(scores.data(), n);
        float* o = out.f32() + (t * H + h) * Dv;
        for (int64_t j = 0; j < n; ++j) axpy(scores[j], v.f32() + ((row0 + idx[j]) * H + h) * Dv, o, Dv);
      }
  }
  return out;
}

Tensor CpuBackend::attention_mha_causal(const Tensor& q, const Tensor& kvb, const Tensor& rope, int64_t rope_col0,
                                        int64_t v_dim, const AttnBatch& batch, const std::vector<int32_t>& key_row0,
                                        float scale) {
  const int64_t T = q.dim(0), H = q.dim(1), Dq = q.dim(2), N = kvb.dim(0), Dv = v_dim;
  const int64_t per_head = H > 0 ? kvb.row_size() / H : 0, Dn = per_head - Dv, Dr = Dq - Dn;
  DS_CHECK(q.dtype() == DType::F32 && kvb.dtype() == DType::F32 && rope.dtype() == DType::F32 &&
               kvb.row_size() == H * per_head && Dn > 0 && Dr >= 0 && rope.dim(0) == N &&
               rope_col0 + Dr <= rope.row_size() && int64_t(batch.pos_of_token.size()) == T,
           "attention_mha_causal: q {}, kvb {}, rope {} (col {}), v_dim {}", q.describe(), kvb.describe(),
           rope.describe(), rope_col0, Dv);
  // Validate up front: nothing may throw inside the parallel region.
  int64_t longest = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int32_t s = batch.seq_of_token[t], p = batch.pos_of_token[t];
    DS_CHECK(s >= 0 && size_t(s) < key_row0.size() && p >= 0 && key_row0[s] + int64_t(p) < N,
             "attention_mha_causal: token {} (sequence {}, position {}) has no key rows", t, s, p);
    longest = std::max<int64_t>(longest, p + 1);
  }
  const int64_t kv_stride = kvb.row_size(), rope_stride = rope.row_size();
  Tensor out = Tensor::zeros({T, H, Dv}, DType::F32);
#pragma omp parallel if (T * H * longest * Dq > (1 << 16))
  {
    std::vector<float> scores(static_cast<size_t>(longest));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t n = batch.pos_of_token[t] + 1, row0 = key_row0[batch.seq_of_token[t]];
        const float* qh = q.f32() + (t * H + h) * Dq;
        for (int64_t j = 0; j < n; ++j) {
          const float* k_nope = kvb.f32() + (row0 + j) * kv_stride + h * per_head;
          const float* k_rope = rope.f32() + (row0 + j) * rope_stride + rope_col0;
          scores[j] = (dot(qh, k_nope, Dn) + dot(qh + Dn, k_rope, Dr)) * scale;
        }
        softmax_inplace(scores.data(), n);
        float* o = out.f32() + (t * H + h) * Dv;
        for (int64_t j = 0; j < n; ++j) axpy(scores[j], kvb.f32() + (row0 + j) * kv_stride + h * per_head + Dn, o, Dv);
      }
  }
  return out;
}

Tensor CpuBackend::causal_index(const AttnBatch& batch) {
  const int64_t T = int64_t(batch.pos_of_token.size()), K = context_width(batch);
  Tensor idx = Tensor::empty({T, K}, DType::I32);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < K; ++j) idx.i32()[t * K + j] = j <= batch.pos_of_token[t] ? int32_t(j) : -1;
  return idx;
}

}  // namespace ds::backend::cpu
