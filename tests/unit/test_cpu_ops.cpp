// Every CPU backend op against a naive double-precision version on random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

using namespace ds;
using namespace ds::backend;

namespace {
std::mt19937 rng(1234);

Tensor randn(std::vector<int64_t> shape, float scale = 1.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::normal_distribution<float> d(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
  return t;
}

// max |a - b| / max |b|
double rel_err(const float* a, const std::vector<double>& b) {
  double e = 0, m = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    e = std::max(e, std::fabs(a[i] - b[i]));
    m = std::max(m, std::fabs(b[i]));
  }
  return m > 0 ? e / m : e;
}

LinearWeight dense(const Tensor& w) { return LinearWeight{w.dim(0), w.dim(1), w, {}}; }

class CpuOps : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(2);
};

TEST_F(CpuOps, LinearMatchesNaiveOnOddShapes) {
  for (auto [M, N, K] : {std::tuple{1, 7, 5}, {3, 130, 96}, {17, 64, 200}, {64, 129, 257}}) {
    Tensor x = randn({M, K}), w = randn({N, K});
    Tensor y = be->linear(x, dense(w));
    std::vector<double> ref(size_t(M * N));
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int k = 0; k < K; ++k) s += double(x.f32()[m * K + k]) * w.f32()[n * K + k];
        ref[m * N + n] = s;
      }
    EXPECT_LT(rel_err(y.f32(), ref), 1e-5) << M << "x" << N << "x" << K;
  }
}

TEST_F(CpuOps, Fp8BlockDequantWithPartialBlocks) {
  const int64_t rows = 200, cols = 300;  // 2 x 3 blocks, the last ones partial
  std::vector<uint8_t> q(rows * cols);
  for (auto& v : q) v = uint8_t(rng() % 256 & 0xf7);  // avoid the NaN code
  std::vector<float> scales = {0.5f, 2.0f, 0.25f, 4.0f, 1.5f, 0.125f};
  HostTensor w{"w", DType::F8_E4M3, {rows, cols}, q.data()}, s{"s", DType::F32, {2, 3}, scales.data()};
  LinearWeight lw = be->load_linear(w, &s);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(lw.w.f32()[r * cols + c], fp8e4m3_to_f32(q[r * cols + c]) * scales[(r / 128) * 3 + c / 128]);
  HostTensor bad{"s", DType::F32, {1, 3}, scales.data()};
  EXPECT_THROW(be->load_linear(w, &bad), ds::Error);
  EXPECT_THROW(be->load_linear(w, nullptr), ds::Error);
}

TEST_F(CpuOps, RmsNormAddRmsNormLayerNorm) {
  const int64_t T = 5, n = 96;
  Tensor x = randn({T, n}), r = randn({T, n}), w = randn({n}), b = randn({n});
  Tensor r_before = Tensor::empty({T, n}, DType::F32);
  std::copy_n(r.f32(), T * n, r_before.f32());
  Tensor y = be->add_rmsnorm(x, r, w, 1e-6f);
  Tensor ln = be->layernorm(x, w, b, 1e-6f);
  std::vector<double> ry(T * n), rr(T * n), rl(T * n);
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0, mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) {
      rr[t * n + i] = double(x.f32()[t * n + i]) + r_before.f32()[t * n + i];
      ss += rr[t * n + i] * rr[t * n + i];
      mean += x.f32()[t * n + i];
    }
    mean /= n;
    for (int64_t i = 0; i < n; ++i) var += (x.f32()[t * n + i] - mean) * (x.f32()[t * n + i] - mean);
    var /= n;
    for (int64_t i = 0; i < n; ++i) {
      ry[t * n + i] = w.f32()[i] * rr[t * n + i] / std::sqrt(ss / n + 1e-6);
      rl[t * n + i] = (x.f32()[t * n + i] - mean) / std::sqrt(var + 1e-6) * w.f32()[i] + b.f32()[i];
    }
  }
  EXPECT_LT(rel_err(r.f32(), rr), 1e-6);
  EXPECT_LT(rel_err(y.f32(), ry), 1e-5);
  EXPECT_LT(rel_err(ln.f32(), rl), 1e-5);
}

TEST_F(CpuOps, RopeBothLayouts) {
  const int64_t T = 4, heads = 3, head = 24, rot = 16, col0 = 8;
  RopeTable tab;
  for (int i = 0; i < rot / 2; ++i) tab.inv_freq.push_back(std::pow(10000.0f, -2.0f * i / rot));
  tab.attention_factor = 1.25f;
  std::vector<int32_t> pos = {0, 5, 77, 1000};
  for (auto layout : {RopeLayout::Interleaved, RopeLayout::HalfSplit}) {
    Tensor x = randn({T, heads * head});
    std::vector<double> ref(x.f32(), x.f32() + x.numel());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < rot / 2; ++i) {
          int64_t a = layout == RopeLayout::Interleaved ? 2 * i : i, b = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + rot / 2;
          int64_t base = t * heads * head + h * head + col0;
          double ang = double(float(tab.inv_freq[i] * float(pos[t])));
          double c = std::cos(ang) * 1.25, s = std::sin(ang) * 1.25;
          double x0 = x.f32()[base + a], x1 = x.f32()[base + b];
          ref[base + a] = x0 * c - x1 * s;
          ref[base + b] = x1 * c + x0 * s;
        }
    be->rope(x, col0, head, heads, rot, pos, tab, layout);
    EXPECT_LT(rel_err(x.f32(), ref), 1e-5);
  }
}

TEST_F(CpuOps, SiluMul) {
  Tensor g = randn({3, 50}, 3.0f), u = randn({3, 50});
  Tensor y = be->silu_mul(g, u);
  std::vector<double> ref(150);
  for (int i = 0; i < 150; ++i) ref[i] = g.f32()[i] / (1 + std::exp(-double(g.f32()[i]))) * u.f32()[i];
  EXPECT_LT(rel_err(y.f32(), ref), 1e-6);
}

// argmax_rows: the greedy token per row (the lowest id among equal maxima), 0 for rows with a NaN or +inf
// or nothing finite; embedding_ids: embedding_part with the ids in a tensor.
TEST_F(CpuOps, ArgmaxRowsAndEmbeddingIds) {
  const int64_t R = 6, V = 50;
  Tensor x = randn({R, V}, 2.0f);
  x.f32()[0 * V + 7] = x.f32()[0 * V + 31] = 9.0f;  // a tie: 7 wins
  x.f32()[1 * V + 49] = 9.0f;
  x.f32()[2 * V + 3] = NAN;
  x.f32()[3 * V + 4] = INFINITY;
  for (int64_t i = 0; i < V; ++i) x.f32()[4 * V + i] = -INFINITY;
  Tensor ids = Tensor::zeros({R + 2}, DType::I32);
  ids.i32()[R] = ids.i32()[R + 1] = -5;  // beyond the rows: untouched
  be->argmax_rows(x, ids);
  const float* row5 = x.f32() + 5 * V;
  const int32_t want5 = int32_t(std::max_element(row5, row5 + V) - row5);
  EXPECT_EQ(std::vector<int32_t>(ids.i32(), ids.i32() + R + 2), (std::vector<int32_t>{7, 49, 0, 0, 0, want5, -5, -5}));

  Tensor table = randn({10, 4});
  std::vector<int32_t> v = {3, 12, 2, 13};  // a part of rows [3, 13): 2 and 13 lie outside
  Tensor idt = Tensor::empty({4}, DType::I32);
  std::copy(v.begin(), v.end(), idt.i32());
  Tensor a = be->embedding_ids(table, idt, 3), b = be->embedding_part(table, v, 3);
  EXPECT_TRUE(std::equal(a.f32(), a.f32() + a.numel(), b.f32()));
  EXPECT_EQ(a.f32()[0 * 4 + 1], table.f32()[0 * 4 + 1]);  // id 3 is row 0 of a part starting at 3
  EXPECT_EQ(a.f32()[1 * 4 + 0], table.f32()[9 * 4 + 0]);  // id 12 is row 9
  for (int64_t t : {2, 3})
    for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(a.f32()[t * 4 + c], 0.0f);
}

// A small paged pool with two sequences; attention over explicit index lists.
struct AttnFixture {
  AttnBatch ab;
  Tensor index;
  AttnFixture() {
    ab.page_size = 3;
    ab.page_tables = {{4, 0, 7, 2}, {5, 1, 3, 6}};
    // seq 0: tokens at positions 9, 10; seq 1: one token at position 7
    ab.seq_of_token = {0, 0, 1};
    ab.pos_of_token = {9, 10, 7};
    index = Tensor::empty({3, 5}, DType::I32);
    int32_t idx[3][5] = {{0, 3, 4, 8, 9}, {1, 2, 10, -1, -1}, {7, 0, 5, 6, -1}};
    std::copy(&idx[0][0], &idx[0][0] + 15, index.i32());
  }
};

TEST_F(CpuOps, AbsorbedAttentionOverPagedIndexLists) {
  AttnFixture f;
  const int64_t H = 2, Dl = 16, Dr = 8, D = Dl + Dr;
  Tensor pool = randn({24, D}), q = randn({3, H, D});
  Tensor out = be->mla_attention_absorbed(q, pool, f.index, f.ab, Dl, 0.3f);
  std::vector<double> ref(3 * H * Dl, 0.0);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < H; ++h) {
      std::vector<double> s;
      std::vector<int> slots;
      for (int j = 0; j < 5 && f.index.i32()[t * 5 + j] >= 0; ++j) {
        int slot = f.ab.slot(f.ab.seq_of_token[t], f.index.i32()[t * 5 + j]);
        double d = 0;
        for (int k = 0; k < D; ++k) d += double(q.f32()[(t * H + h) * D + k]) * pool.f32()[slot * D + k];
        s.push_back(d * 0.3);
        slots.push_back(slot);
      }
      double m = *std::max_element(s.begin(), s.end()), z = 0;
      for (auto& v : s) z += (v = std::exp(v - m));
      for (size_t j = 0; j < s.size(); ++j)
        for (int c = 0; c < Dl; ++c) ref[(t * H + h) * Dl + c] += s[j] / z * pool.f32()[slots[j] * D + c];
    }
  EXPECT_LT(rel_err(out.f32(), ref), 1e-5);
  // An index after the query's own position is a bug upstream: refused.
  f.index.i32()[14] = 8;
  EXPECT_THROW(be->mla_attention_absorbed(q, pool, f.index, f.ab, Dl, 0.3f), ds::Error);
}

TEST_F(CpuOps, AbsorptionEqualsExpandedAttention) {
  // o_proj input from the absorbed path (absorb q, attend over latents, absorb out) equals the
  // expanded path (per-head K/V from kv_b) for the same cache content.
  AttnFixture f;
  const int64_t H = 3, Dn = 8, Dr = 4, Dv = 6, Dl = 10;
  Tensor kv_b = randn({H * (Dn + Dv), Dl}), pool = randn({24, Dl + Dr}), q = randn({3, H * (Dn + Dr)});
  LinearWeight w = dense(kv_b);
  Tensor abs_out = be->mla_absorb_out(
      be->mla_attention_absorbed(be->mla_absorb_q(q, w, H, Dn, Dv), pool, f.index, f.ab, Dl, 0.2f), w, H, Dn, Dv);
  // expanded: keys of each sequence are its positions 0..10 / 0..7
  std::vector<int32_t> slots, row0;
  for (int s = 0; s < 2; ++s) {
    row0.push_back(int32_t(slots.size()));
    for (int p = 0; p <= (s == 0 ? 10 : 7); ++p) slots.push_back(f.ab.slot(s, p));
  }
  Tensor lat = be->cache_gather(pool, slots);
  const int64_t N = lat.dim(0);
  Tensor c = Tensor::empty({N, Dl}, DType::F32);
  be->copy_cols(c, 0, lat, 0, Dl);
  Tensor kvb = be->linear(c, w);
  Tensor k = Tensor::zeros({N, H, Dn + Dr}, DType::F32), v = Tensor::zeros({N, H, Dv}, DType::F32);
  for (int64_t h = 0; h < H; ++h) {
    be->copy_cols(k, h * (Dn + Dr), kvb, h * (Dn + Dv), Dn);
    be->copy_cols(k, h * (Dn + Dr) + Dn, lat, Dl, Dr);
    be->copy_cols(v, h * Dv, kvb, h * (Dn + Dv) + Dn, Dv);
  }
  Tensor exp_out = be->attention_expanded(q.view({3, H, Dn + Dr}), k, v, f.index, f.ab, row0, 0.2f);
  std::vector<double> ref(exp_out.f32(), exp_out.f32() + exp_out.numel());
  EXPECT_LT(rel_err(abs_out.f32(), ref), 1e-5);
}

// Dense causal MHA prefill: K = [kvb's K_nope | the latent rows' rope key], V from kvb, read in place.
// Batches of sequences, each bringing `fresh` tokens after `prefix` cached ones (keys: prefix + fresh rows).
TEST_F(CpuOps, MhaCausalMatchesNaive) {
  struct Seq {
    int32_t prefix, fresh;
  };
  const std::vector<std::vector<Seq>> cases = {
      {{0, 1}}, {{0, 9}}, {{6, 5}}, {{0, 4}, {3, 1}, {10, 7}}, {{12, 1}, {0, 2}, {5, 5}, {1, 8}}};
  const int64_t H = 3, Dn = 8, Dr = 4, Dv = 6, Dl = 10, Dq = Dn + Dr;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    AttnBatch ab;
    std::vector<int32_t> key_row0;
    int64_t N = 0;
    for (size_t s = 0; s < cases[ci].size(); ++s) {
      key_row0.push_back(int32_t(N));
      for (int32_t i = 0; i < cases[ci][s].fresh; ++i) {
        ab.seq_of_token.push_back(int32_t(s));
        ab.pos_of_token.push_back(cases[ci][s].prefix + i);
      }
      N += cases[ci][s].prefix + cases[ci][s].fresh;
    }
    const int64_t T = int64_t(ab.pos_of_token.size());
    Tensor q = randn({T, H, Dq}), kvb = randn({N, H * (Dn + Dv)}), lat = randn({N, Dl + Dr});
    const float scale = 0.3f;
    Tensor out = be->attention_mha_causal(q, kvb, lat, Dl, Dv, ab, key_row0, scale);
    ASSERT_EQ(out.shape(), (std::vector<int64_t>{T, H, Dv}));
    std::vector<double> ref(size_t(T * H * Dv), 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t r0 = key_row0[ab.seq_of_token[t]], n = ab.pos_of_token[t] + 1;
        std::vector<double> s(static_cast<size_t>(n));
        double mx = -INFINITY, z = 0;
        for (int64_t j = 0; j < n; ++j) {
          double d = 0;
          for (int64_t c = 0; c < Dn; ++c) d += double(q.f32()[(t * H + h) * Dq + c]) * kvb.f32()[(r0 + j) * H * (Dn + Dv) + h * (Dn + Dv) + c];
          for (int64_t c = 0; c < Dr; ++c) d += double(q.f32()[(t * H + h) * Dq + Dn + c]) * lat.f32()[(r0 + j) * (Dl + Dr) + Dl + c];
          s[size_t(j)] = d * scale;
          mx = std::max(mx, s[size_t(j)]);
        }
        for (auto& x : s) z += (x = std::exp(x - mx));
        for (int64_t j = 0; j < n; ++j)
          for (int64_t c = 0; c < Dv; ++c)
            ref[size_t((t * H + h) * Dv + c)] += s[size_t(j)] / z * kvb.f32()[(r0 + j) * H * (Dn + Dv) + h * (Dn + Dv) + Dn + c];
      }
    EXPECT_LT(rel_err(out.f32(), ref), 1e-5) << "case " << ci;
  }
  // A query whose position lies past its sequence's key rows is refused.
  AttnBatch ab;
  ab.seq_of_token = {0};
  ab.pos_of_token = {4};
  EXPECT_THROW(be->attention_mha_causal(randn({1, H, Dq}), randn({4, H * (Dn + Dv)}), randn({4, Dl + Dr}), Dl, Dv, ab,
                                        {0}, 1.f),
               ds::Error);
}

TEST_F(CpuOps, IndexerTopkMatchesNaive) {
  AttnBatch ab;
  ab.page_size = 4;
  ab.page_tables = {{3, 1, 0, 2, 5, 4, 7, 6}};
  const int64_t H = 3, D = 8, topk = 6;
  for (int32_t p : {2, 5, 6, 20, 29}) {
    ab.seq_of_token.push_back(0);
    ab.pos_of_token.push_back(p);
  }
  Tensor q = randn({5, H * D}), w = randn({5, H}), k = randn({32, D});
  Tensor idx = be->indexer_topk(q, w, k, ab, H, D, topk);
  ASSERT_EQ(idx.dim(1), topk);
  for (int t = 0; t < 5; ++t) {
    int32_t p = ab.pos_of_token[t];
    std::vector<int32_t> want;
    if (p + 1 <= topk) {
      for (int j = 0; j <= p; ++j) want.push_back(j);
    } else {
      std::vector<std::pair<double, int32_t>> sc;
      for (int32_t j = 0; j <= p; ++j) {
        double s = 0;
        for (int h = 0; h < H; ++h) {
          double d = 0;
          for (int c = 0; c < D; ++c) d += double(q.f32()[t * H * D + h * D + c]) * k.f32()[ab.slot(0, j) * D + c];
          s += w.f32()[t * H + h] * std::max(0.0, d);
        }
        sc.push_back({-s, j});
      }
      std::sort(sc.begin(), sc.end());
      for (int i = 0; i < topk; ++i) want.push_back(sc[i].second);
      std::sort(want.begin(), want.end());
    }
    want.resize(topk, -1);
    EXPECT_EQ(std::vector<int32_t>(idx.i32() + t * topk, idx.i32() + (t + 1) * topk), want) << "position " << p;
  }
}

TEST_F(CpuOps, HadamardFp8RoundMatchesMatrixHadamard) {
  const int64_t n = 32;
  Tensor x = randn({4, n}, 5.0f);
  std::vector<double> rot(4 * n, 0.0);
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        rot[r * n + i] += (__builtin_popcount(i & j) % 2 ? -1.0 : 1.0) * x.f32()[r * n + j] / std::sqrt(double(n));
  be->hadamard_fp8_round(x, n);
  for (int r = 0; r < 4; ++r) {
    double amax = 0;
    for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(rot[r * n + i]));
    double scale = std::exp2(std::ceil(std::log2(amax / 448.0)));
    for (int i = 0; i < n; ++i) {
      float q = x.f32()[r * n + i] / float(scale);
      EXPECT_EQ(fp8e4m3_to_f32(f32_to_fp8e4m3(q)), q) << "value is not an e4m3 code times the scale";
      EXPECT_NEAR(x.f32()[r * n + i], rot[r * n + i], std::fabs(rot[r * n + i]) * 0.07 + scale * 0.01);
    }
  }
}

TEST_F(CpuOps, MoeRoutingGroupLimitedTopk) {
  const int64_t T = 6, E = 16;
  MoeRouting cfg{4, 2, 3, true, 2.5f};
  Tensor logits = randn({T, E}, 2.0f), bias = randn({E}, 0.3f), ids, wts;
  be->moe_route(logits, bias, cfg, &ids, &wts);
  for (int t = 0; t < T; ++t) {
    std::vector<double> s(E), b(E);
    for (int e = 0; e < E; ++e) {
      s[e] = 1 / (1 + std::exp(-double(logits.f32()[t * E + e])));
      b[e] = s[e] + bias.f32()[e];
    }
    std::vector<std::pair<double, int>> g;
    for (int gi = 0; gi < 4; ++gi) {
      std::vector<double> m(b.begin() + gi * 4, b.begin() + gi * 4 + 4);
      std::sort(m.rbegin(), m.rend());
      g.push_back({-(m[0] + m[1]), gi});
    }
    std::sort(g.begin(), g.end());
    std::vector<std::pair<double, int>> cand;
    for (int e = 0; e < E; ++e)
      if (e / 4 == g[0].second || e / 4 == g[1].second) cand.push_back({-b[e], e});
    std::sort(cand.begin(), cand.end());
    double sum = s[cand[0].second] + s[cand[1].second] + s[cand[2].second];
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(ids.i32()[t * 3 + k], cand[k].second);
      EXPECT_NEAR(wts.f32()[t * 3 + k], s[cand[k].second] / sum * 2.5, 1e-6);
    }
  }
}

TEST_F(CpuOps, MoeExpertsWeightedSum) {
  const int64_t T = 5, H = 12, I = 8, E = 4, k = 2;
  std::vector<ExpertWeights> ex;
  for (int e = 0; e < E; ++e) ex.push_back({dense(randn({I, H})), dense(randn({I, H})), dense(randn({H, I}))});
  Tensor x = randn({T, H}), ids = Tensor::empty({T, k}, DType::I32), w = randn({T, k});
  for (int i = 0; i < T * k; ++i) ids.i32()[i] = int32_t((i * 3 + i / 2) % E);
  Tensor y = be->moe_experts(x, ids, w, *be->prepare_experts(ex));
  std::vector<double> ref(T * H, 0.0);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j) {
      const auto& e = ex[ids.i32()[t * k + j]];
      std::vector<double> a(I);
      for (int i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (int h = 0; h < H; ++h) {
          g += double(e.gate.w.f32()[i * H + h]) * x.f32()[t * H + h];
          u += double(e.up.w.f32()[i * H + h]) * x.f32()[t * H + h];
        }
        a[i] = g / (1 + std::exp(-g)) * u;
      }
      for (int h = 0; h < H; ++h) {
        double o = 0;
        for (int i = 0; i < I; ++i) o += double(e.down.w.f32()[h * I + i]) * a[i];
        ref[t * H + h] += w.f32()[t * k + j] * o;
      }
    }
  EXPECT_LT(rel_err(y.f32(), ref), 1e-5);
}

// moe_ffn's default (every backend without a fused form): the routed experts, then the shared expert's SwiGLU
// added last, bitwise the composition model/layer.cpp used before the op; no shared expert: moe_experts.
TEST_F(CpuOps, MoeFfnAddsTheSharedExpertLast) {
  const int64_t T = 3, H = 12, I = 8, E = 4, k = 2;
  std::vector<ExpertWeights> ex;
  for (int e = 0; e < E; ++e) ex.push_back({dense(randn({I, H})), dense(randn({I, H})), dense(randn({H, I}))});
  const ExpertWeights shared{dense(randn({I, H})), dense(randn({I, H})), dense(randn({H, I}))};
  Tensor x = randn({T, H}), ids = Tensor::empty({T, k}, DType::I32), w = randn({T, k});
  for (int i = 0; i < T * k; ++i) ids.i32()[i] = int32_t((i * 3 + 1) % E);
  const auto set = be->prepare_experts(ex);
  Tensor want = be->moe_experts(x, ids, w, *set);
  be->add_inplace(want, be->linear(be->silu_mul(be->linear(x, shared.gate), be->linear(x, shared.up)), shared.down));
  Tensor y = be->moe_ffn(x, ids, w, *set, &shared);
  ASSERT_EQ(y.numel(), want.numel());
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y.f32()[i], want.f32()[i]) << "element " << i;
  Tensor routed = be->moe_ffn(x, ids, w, *set, nullptr), plain = be->moe_experts(x, ids, w, *set);
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(routed.f32()[i], plain.f32()[i]) << "element " << i;
}

TEST_F(CpuOps, EmbeddingAndCacheRejectBadIndices) {
  Tensor table = randn({10, 4}), pool = randn({6, 4}), rows = randn({2, 4});
  EXPECT_THROW(be->embedding(table, {3, 10}), ds::Error);
  EXPECT_THROW(be->cache_write(pool, 0, rows, {1, 6}), ds::Error);
  Tensor e = be->embedding(table, {9, 0});
  EXPECT_EQ(e.f32()[0], table.f32()[36]);
}

// Raw rows to and from host memory (PD's KV rows): gathered in the order asked (repeats too), scattered to
// exactly the rows named, every other byte untouched; rows outside the pool refused.
TEST_F(CpuOps, GatherAndScatterRowsAsBytes) {
  Tensor pool = Tensor::empty({9, 5}, DType::U8);
  for (int i = 0; i < 45; ++i) pool.data<uint8_t>()[i] = uint8_t(i);
  std::vector<uint8_t> out(3 * 5);
  be->gather_rows_to_host(out.data(), pool, {7, 0, 7});
  EXPECT_EQ(out, (std::vector<uint8_t>{35, 36, 37, 38, 39, 0, 1, 2, 3, 4, 35, 36, 37, 38, 39}));
  const std::vector<uint8_t> in = {100, 101, 102, 103, 104, 200, 201, 202, 203, 204};
  be->scatter_rows_from_host(pool, {8, 2}, in.data());
  for (int i = 0; i < 45; ++i) {
    const int row = i / 5, col = i % 5;
    const int want = row == 8 ? 100 + col : row == 2 ? 200 + col : i;
    EXPECT_EQ(pool.data<uint8_t>()[i], want) << "byte " << i;
  }
  EXPECT_THROW(be->gather_rows_to_host(out.data(), pool, {9}), ds::Error);
  EXPECT_THROW(be->scatter_rows_from_host(pool, {-1}, in.data()), ds::Error);
}

}  // namespace
