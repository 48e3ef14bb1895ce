// The lightning indexer on the CPU: per-head ReLU scores weighted and summed, causal top-k; and
// DeepSeek's FP8 numerics (Hadamard rotation + e4m3 rounding with power-of-two scales).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/kv_fp8_rows.h"
#include "util/error.h"

namespace ds::backend::cpu {

namespace {

// Scores of a block of queries of one sequence against all of its keys up to the block's last
// position, as small GEMMs: the queries' head rows [R*H, D] against tiles of kKeys gathered keys
// [kKeys, D] (through the page table), then the ReLU-weighted head sum per query. Every key tile is
// read once per block instead of once per query and head: the cost stays ~ queries x context x H x D,
// at GEMM speed (was a dot product per query, head and key: 190 s for an 8K chunk after 8K tokens).
struct IndexerBlock {
  static constexpr int64_t kKeys = 128;  // keys per tile (even: GEMM's 4x2 register tile)
  std::vector<float> qrows, keys, dots;   // [R*H padded to 4, D], [kKeys, D], [R*H padded, kKeys]
  std::vector<std::vector<float>> scores;  // per query of the block: one score per earlier position

  void run(const float* q, const float* w, const KvRows& k_pool, const AttnBatch& batch, int64_t heads, int64_t D,
           const std::vector<int64_t>& tokens) {
    const int64_t R = int64_t(tokens.size()), rows = (R * heads + 3) / 4 * 4;
    const int32_t seq = batch.seq_of_token[tokens[0]];
    int32_t pmax = 0;
    for (int64_t t : tokens) pmax = std::max(pmax, batch.pos_of_token[t]);
    qrows.assign(size_t(rows * D), 0.0f);
    for (int64_t r = 0; r < R; ++r) std::copy_n(q + tokens[r] * heads * D, heads * D, qrows.data() + r * heads * D);
    keys.resize(size_t(kKeys * D));
    dots.resize(size_t(rows * kKeys));
    scores.resize(size_t(R));
    for (int64_t r = 0; r < R; ++r) scores[r].assign(size_t(batch.pos_of_token[tokens[r]] + 1), 0.0f);
    for (int64_t j0 = 0; j0 <= pmax; j0 += kKeys) {
      const int64_t n = std::min<int64_t>(kKeys, pmax + 1 - j0), n2 = (n + 1) / 2 * 2;
      for (int64_t j = 0; j < n; ++j)
        std::copy_n(k_pool.row(batch.slot(seq, int32_t(j0 + j))), D, keys.data() + j * D);
      if (n2 > n) std::fill_n(keys.data() + n * D, D, 0.0f);
      gemm_xwt_serial(qrows.data(), keys.data(), dots.data(), rows, n2, D);
      for (int64_t r = 0; r < R; ++r) {
        const int64_t p = batch.pos_of_token[tokens[r]];
        const float* wt = w + tokens[r] * heads;
        for (int64_t j = 0; j < n && j0 + j <= p; ++j) {
          float s = 0;
          for (int64_t h = 0; h < heads; ++h) s += wt[h] * std::max(0.0f, dots[size_t((r * heads + h) * n2 + j)]);
          scores[r][size_t(j0 + j)] = s;
        }
      }
    }
  }
};

}  // namespace

Tensor CpuBackend::indexer_topk(const Tensor& q, const Tensor& w, const Tensor& k_pool, const AttnBatch& batch,
                                int64_t heads, int64_t head_dim, int64_t topk, bool /*fp8_values: fp32 either way*/) {
  int64_t T = q.dim(0), max_ctx = 0;
  // A U8 pool is packed FP8 (backend/kv_fp8.h): e4m3 keys with one scale each, dequantised here.
  const bool packed = k_pool.dtype() == DType::U8;
  const KvFp8Layout layout = KvFp8Layout::indexer(head_dim);
  DS_CHECK(q.row_size() == heads * head_dim && w.row_size() == heads &&
               k_pool.row_size() == (packed ? layout.bytes() : head_dim),
           "indexer: q {}, w {}, k pool {} do not match {} heads x {}", q.describe(), w.describe(),
           k_pool.describe(), heads, head_dim);
  max_ctx = context_width(batch);
  int64_t K = std::min(topk, max_ctx);
  Tensor index = Tensor::empty({T, K}, DType::I32);
  std::fill(index.i32(), index.i32() + T * K, -1);
  // Queries that see at most topk tokens select all of them (dense causal, no scoring). The others go
  // in blocks of consecutive tokens of one sequence, ~64 head rows each.
  const int64_t per_block = std::max<int64_t>(1, 64 / heads);
  std::vector<std::vector<int64_t>> blocks;
  for (int64_t t = 0; t < T; ++t) {
    const int32_t p = batch.pos_of_token[t];
    if (p + 1 <= topk) {
      std::iota(index.i32() + t * K, index.i32() + t * K + p + 1, 0);
      continue;
    }
    if (blocks.empty() || int64_t(blocks.back().size()) == per_block ||
        batch.seq_of_token[blocks.back().front()] != batch.seq_of_token[t])
      blocks.emplace_back();
    blocks.back().push_back(t);
  }
  // The keys the scored queries read: per sequence, every position up to its last scored query.
  std::vector<int32_t> used;
  if (packed) {
    std::vector<int32_t> last(batch.page_tables.size(), -1);
    for (const auto& blk : blocks)
      for (int64_t t : blk) last[batch.seq_of_token[t]] = std::max(last[batch.seq_of_token[t]], batch.pos_of_token[t]);
    for (size_t s = 0; s < last.size(); ++s)
      for (int32_t p = 0; p <= last[s]; ++p) used.push_back(batch.slot(int32_t(s), p));
  }
  const KvRows keys(k_pool, packed ? &layout : nullptr, used);
#pragma omp parallel
  {
    IndexerBlock blk;
    std::vector<int32_t> order;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < int64_t(blocks.size()); ++b) {
      blk.run(q.f32(), w.f32(), keys, batch, heads, head_dim, blocks[b]);
      for (size_t r = 0; r < blocks[b].size(); ++r) {
        const std::vector<float>& scores = blk.scores[r];
        order.resize(scores.size());
        std::iota(order.begin(), order.end(), 0);
        // Highest scores first; among equal scores the earlier position (deterministic).
        auto better = [&](int32_t a, int32_t c) { return scores[a] > scores[c] || (scores[a] == scores[c] && a < c); };
        std::nth_element(order.begin(), order.begin() + (topk - 1), order.end(), better);
        std::sort(order.begin(), order.begin() + topk);
        std::copy(order.begin(), order.begin() + topk, index.i32() + blocks[b][r] * K);
      }
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
