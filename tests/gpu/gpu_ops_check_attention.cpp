// The CUDA backend's MLA attention (absorbed, tensor-core and SIMT; expanded), the MLA weight absorptions and
// the lightning indexer (scores, top-k, both kernels) against the CPU backend, over several sequences on
// scattered pages (the conventions of gpu_ops_check.cpp).
#include <array>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "attn_scenario.h"
#include "gpu_ops_check_kv_dequant.h"
#include "ops_check_util.h"

namespace opcheck {

// ---------------------------------------------------------------- attention
Scenario make_scenario(const std::vector<int32_t>& ctx, const std::vector<int32_t>& n_new, int32_t page_size,
                       int64_t sparse_k, int64_t min_width) {
  Scenario sc;
  sc.ctx = ctx;
  sc.ab.page_size = page_size;
  int64_t pages = 0;
  for (int32_t c : ctx) pages += (c + page_size - 1) / page_size;
  const int64_t pool_pages = pages + 7;
  std::vector<int32_t> perm(static_cast<size_t>(pool_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng());
  int64_t next = 0, row0 = 0;
  for (size_t s = 0; s < ctx.size(); ++s) {
    std::vector<int32_t> pt;
    for (int32_t i = 0; i < (ctx[s] + page_size - 1) / page_size; ++i) pt.push_back(perm[size_t(next++)]);
    sc.ab.page_tables.push_back(pt);
    sc.key_row0.push_back(int32_t(row0));
    row0 += ctx[s];
    for (int32_t p = ctx[s] - n_new[s]; p < ctx[s]; ++p) {
      sc.ab.seq_of_token.push_back(int32_t(s));
      sc.ab.pos_of_token.push_back(p);
    }
  }
  sc.rows = pool_pages * page_size;
  sc.T = int64_t(sc.ab.pos_of_token.size());
  int64_t K = 0;
  for (int32_t p : sc.ab.pos_of_token) K = std::max<int64_t>(K, sparse_k > 0 ? std::min<int64_t>(sparse_k, p + 1) : p + 1);
  K = std::max(K, min_width);
  sc.K = K;
  sc.index = Tensor::empty({sc.T, K}, DType::I32);
  for (int64_t t = 0; t < sc.T; ++t) {
    const int32_t p = sc.ab.pos_of_token[size_t(t)];
    int32_t* row = sc.index.i32() + t * K;
    std::fill(row, row + K, -1);
    if (sparse_k > 0 && p + 1 > sparse_k) {
      std::vector<int32_t> all(size_t(p + 1));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng());
      all.resize(size_t(sparse_k));
      std::sort(all.begin(), all.end());
      std::copy(all.begin(), all.end(), row);
    } else {
      std::iota(row, row + p + 1, 0);
    }
  }
  return sc;
}

void check_mla() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t sparse_k, H, Dl, Dr;
    int64_t width = 0;       // index rows padded with -1 to this width
    bool dead_row = false;   // the last query's whole list is -1 (output 0)
  };
  const std::vector<Case> cases = {
      {"tiny, 3 seqs prefill+decode", {40, 23, 64}, {13, 1, 64}, 4, 0, 4, 64, 16},
      {"decode 1 token, ctx 3000 sparse 2048", {3000}, {1}, 64, 2048, 128, 512, 64},
      {"decode 4 seqs, ctx 100..5000, sparse 2048", {100, 2048, 2049, 5000}, {1, 1, 1, 1}, 16, 2048, 128, 512, 64},
      {"chunk 33 + decodes, causal", {300, 77, 129}, {33, 1, 1}, 16, 0, 16, 512, 64},
      {"prefill 130 tokens, sparse 64", {130}, {130}, 1, 64, 20, 512, 64},
      // Shapes aimed at the tensor-core kernel (64 heads x 32-key tiles per block).
      {"decode ctx 5/40/1000, width 2048", {5, 40, 1000}, {1, 1, 1}, 64, 2048, 128, 512, 64, 2048},
      {"decode ctx 7/20/300 width 2048, dead row", {7, 20, 300}, {1, 1, 1}, 16, 2048, 100, 512, 64, 2048, true},
      {"decode K < one tile (ctx 7, 20)", {7, 20}, {1, 1}, 4, 2048, 64, 512, 64},
      {"demo widths, 6 seqs ctx 33..2100", {33, 64, 65, 500, 1999, 2100}, {1, 1, 1, 1, 1, 1}, 64, 2048, 4, 256, 64},
      {"demo widths, chunk 40 + decode", {700, 90}, {40, 1}, 16, 512, 36, 256, 64},
      {"prefill 80 of 600 (no split), sparse 512", {600}, {80}, 64, 512, 100, 512, 64},
      {"3 seqs x 30 tokens, sparse 100, 65 heads", {97, 150, 64}, {30, 30, 30}, 8, 100, 65, 512, 64},
  };
  constexpr double kTolTc = 1e-4;  // BF16 MMAs on two-part (hi + lo) queries and weights: ~1e-6 expected
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, c.sparse_k, c.width);
    if (c.dead_row) std::fill(sc.index.i32() + (sc.T - 1) * sc.K, sc.index.i32() + sc.T * sc.K, -1);
    const int64_t D = c.Dl + c.Dr;
    Tensor pool = randn({sc.rows, D}), q = randn({sc.T, c.H, D}, 0.3f);
    const float scale = 1.0f / std::sqrt(float(D));
    const std::string what = fmt::format("{} (T={} H={} K={})", c.name, sc.T, c.H, sc.K);
    Tensor ref = g_cpu->mla_attention_absorbed(q, pool, sc.index, sc.ab, c.Dl, scale);
    Tensor qg = up(q), ig = up(sc.index), pg = up(pool);
    record("mla_attention_absorbed", what, cmp(g_gpu->mla_attention_absorbed(qg, pg, ig, sc.ab, c.Dl, scale), ref).rel,
           kTolF32);
    // A BF16 latent pool (the serving default on CUDA) against the CPU on the same rounded values.
    auto [pb, pw] = bf16_pair(pool);
    Tensor pbg = up(pb);
    Tensor ref_b = g_cpu->mla_attention_absorbed(q, pw, sc.index, sc.ab, c.Dl, scale);
    record("mla_attention_absorbed", "BF16 pool, " + what,
           cmp(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale), ref_b).rel, kTolF32);
    // The fast GEMM mode: the tensor-core kernel for BF16 pools of supported widths, else the SIMT one (the
    // mma.sync kernel pinned: Auto may take the wgmma kernel, checked in gpu_ops_check_mla_wgmma.cpp).
    g_gpu->set_gemm_mode(GemmMode::Fast);
    g_gpu->set_mla_kernel(cuda::MlaKernel::Tc);
    const bool want_tc = cuda::mla_tc_supported(int(D), int(c.Dl));
    Tensor o1 = g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale);
    const std::string path = g_gpu->last_mla_path();
    record("mla_attention_absorbed fast", fmt::format("BF16 pool, {}: {}", path, what),
           path == (want_tc ? "tc" : "simt") ? cmp(o1, ref_b).rel : INFINITY, want_tc ? kTolTc : kTolF32);
    if (want_tc) {  // the same inputs again: bitwise the same (a race shows up as a moving result)
      const Tensor h1 = down(o1), h2 = down(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale));
      const bool same = std::equal(h1.f32(), h1.f32() + h1.numel(), h2.f32());
      record("mla_attention_absorbed fast", "tc repeat bitwise, " + what, same ? 0.0 : 1.0, 0.0);
    }
    Tensor o32 = g_gpu->mla_attention_absorbed(qg, pg, ig, sc.ab, c.Dl, scale);
    record("mla_attention_absorbed fast", fmt::format("fp32 pool, {}: {}", g_gpu->last_mla_path(), what),
           std::string(g_gpu->last_mla_path()) == "simt" ? cmp(o32, ref).rel : INFINITY, kTolF32);
    g_gpu->set_mla_kernel(cuda::MlaKernel::Auto);
    g_gpu->set_gemm_mode(GemmMode::Exact);
    if (c.H <= 20) {  // the expanded form over per-head K/V
      const int64_t Nk = std::accumulate(c.ctx.begin(), c.ctx.end(), int64_t(0)), Dv = 48;
      Tensor k = randn({Nk, c.H, D}, 0.5f), v = randn({Nk, c.H, Dv});
      Tensor eref = g_cpu->attention_expanded(q, k, v, sc.index, sc.ab, sc.key_row0, scale);
      Tensor eout = g_gpu->attention_expanded(up(q), up(k), up(v), up(sc.index), sc.ab, sc.key_row0, scale);
      record("attention_expanded", what, cmp(eout, eref).rel, kTolF32);
    }
  }
  // causal_index
  Scenario sc = make_scenario({40, 23, 64}, {13, 1, 64}, 4, 0);
  Tensor ci = g_gpu->to_host(g_gpu->causal_index(sc.ab)), cc = g_cpu->causal_index(sc.ab);
  const bool same = ci.numel() == cc.numel() && std::equal(cc.i32(), cc.i32() + cc.numel(), ci.data<int32_t>());
  record("causal_index", "3 seqs, 78 tokens", same ? 0.0 : 1.0, 0.0);
  // Where every context fits in topk, the indexer's rows are the causal index's (the model's dense
  // short-context path relies on it): also for a step capped at a max_context <= topk.
  for (int32_t cap : {0, 128}) {
    backend::AttnBatch ab = sc.ab;
    ab.max_context = cap;
    Tensor q = randn({sc.T, 4 * 32}), w = randn({sc.T, 4}, 0.1f), kp = randn({sc.rows, 32});
    Tensor sel = g_gpu->to_host(g_gpu->indexer_topk(up(q), up(w), up(kp), ab, 4, 32, 128));
    Tensor all = g_gpu->to_host(g_gpu->causal_index(ab));
    const bool eq = sel.numel() == all.numel() &&
                    std::equal(all.data<int32_t>(), all.data<int32_t>() + all.numel(), sel.data<int32_t>());
    record("indexer_topk = causal_index", fmt::format("contexts <= topk 128, max_context {} (bitwise)", cap),
           eq ? 0.0 : 1.0, 0.0);
  }
  // weight absorption
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    // {2, 192, 64, 256}: absorb_q's K past the rows its kernel loads early, heads' rows across scale blocks.
    for (auto [H, Dn, Dv, Dl] : std::vector<std::array<int64_t, 4>>{
             {4, 32, 32, 64}, {16, 128, 128, 512}, {2, 192, 64, 256}})
      for (int64_t T : {1, 2, 3, 5, 37}) {  // the decode kernels' token tiles 1, 2, 4, 8; 37: the GEMM
        BothLinear kvb(H * (Dn + Dv), Dl, dt);
        const int64_t Dr = 64;
        Tensor q = randn({T, H * (Dn + Dr)});
        record("mla_absorb_q", fmt::format("{} T={} H={} Dn={} Dl={}", dname(dt), T, H, Dn, Dl),
               cmp(g_gpu->mla_absorb_q(up(q), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_q(q, kvb.c, H, Dn, Dv)).rel, kTolF32);
        Tensor o = randn({T, H, Dl});
        record("mla_absorb_out", fmt::format("{} T={} H={} Dv={} Dl={}", dname(dt), T, H, Dv, Dl),
               cmp(g_gpu->mla_absorb_out(up(o), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_out(o, kvb.c, H, Dn, Dv)).rel,
               kTolF32);
      }
  // The fast mode from 64 tokens: kv_b dequantised + cuBLAS strided-batched TF32 (activations rounded to
  // TF32, 2^-11: about 5e-4 relative per product).
  g_gpu->set_gemm_mode(GemmMode::Fast);
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (auto [H, Dn, Dv, Dl] : std::vector<std::array<int64_t, 4>>{{4, 32, 32, 64}, {128, 128, 128, 512}})
      for (int64_t T : {64, 201}) {
        BothLinear kvb(H * (Dn + Dv), Dl, dt);
        const int64_t Dr = 64;
        Tensor q = randn({T, H * (Dn + Dr)});
        const double eq = cmp(g_gpu->mla_absorb_q(up(q), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_q(q, kvb.c, H, Dn, Dv)).rel;
        const bool tf32_q = std::string(g_gpu->last_absorb_path()) == "tf32-batched";
        record("mla_absorb_q", fmt::format("fast (TF32 batched) {} T={} H={} Dn={} Dl={}", dname(dt), T, H, Dn, Dl),
               tf32_q ? eq : INFINITY, 2e-3);
        Tensor o = randn({T, H, Dl});
        const double eo = cmp(g_gpu->mla_absorb_out(up(o), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_out(o, kvb.c, H, Dn, Dv)).rel;
        const bool tf32_o = std::string(g_gpu->last_absorb_path()) == "tf32-batched";
        record("mla_absorb_out", fmt::format("fast (TF32 batched) {} T={} H={} Dv={} Dl={}", dname(dt), T, H, Dv, Dl),
               tf32_o ? eo : INFINITY, 2e-3);
      }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

// ---------------------------------------------------------------- dense causal MHA prefill
// attention_mha_causal: K/V read from a kv_b product and the latent rows' rope key. Fast mode: the tensor-core
// kernel against the CPU op on the same bf16-rounded q / kvb / rope (what remains is P's bf16 rounding and
// the summation order); exact mode: the fp32 pack + SIMT path against the CPU op to fp32 rounding.
void check_mha() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int64_t H, Dn, Dr, Dv;
  };
  const std::vector<Case> cases = {
      {"tiny widths, 3 seqs: chunk 13 / 23 / 64 fresh", {40, 23, 64}, {13, 23, 64}, 4, 32, 16, 32},
      {"demo widths, 2 seqs: 480 fresh, 70 over 130", {480, 200}, {480, 70}, 4, 64, 64, 64},
      {"1 token, ctx 1", {1}, {1}, 16, 128, 64, 128},
      {"prefill 130 (2 query tiles)", {130}, {130}, 16, 128, 64, 128},
      {"chunk 200 over a prefix of 800", {1000}, {200}, 8, 128, 64, 128},
      {"3 seqs: 300 fresh, 33 over 44, 1 over 128", {300, 77, 129}, {300, 33, 1}, 20, 128, 64, 128},
      {"128 heads, 2 seqs 257 + 64 fresh", {257, 64}, {257, 64}, 128, 128, 64, 128},
  };
  const int64_t Dl = 64;  // latent columns before the rope key in the gathered rows
  constexpr double kTolTc = 1e-2;  // P in bf16 (2^-9 relative per weight)
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, 1, 0);
    const int64_t N = std::accumulate(c.ctx.begin(), c.ctx.end(), int64_t(0)), Dq = c.Dn + c.Dr;
    Tensor q = randn({sc.T, c.H, Dq}), kvb = randn({N, c.H * (c.Dn + c.Dv)}), lat = randn({N, Dl + c.Dr});
    const float scale = 1.0f / std::sqrt(float(Dq));
    const std::string what = fmt::format("{} (T={} N={} H={})", c.name, sc.T, N, c.H);
    auto [qb, qw] = bf16_pair(q);
    auto [kb, kw] = bf16_pair(kvb);
    auto [lb, lw] = bf16_pair(lat);
    Tensor ref_b = g_cpu->attention_mha_causal(qw, kw, lw, Dl, c.Dv, sc.ab, sc.key_row0, scale);
    Tensor qg = up(qw), kg = up(kw), lg = up(lw);
    g_gpu->set_gemm_mode(GemmMode::Fast);
    Tensor o1 = g_gpu->attention_mha_causal(qg, kg, lg, Dl, c.Dv, sc.ab, sc.key_row0, scale);
    const std::string path = g_gpu->last_mha_path();
    record("attention_mha_causal fast", fmt::format("{}: {}", path, what), path == "tc" ? cmp(o1, ref_b).rel : INFINITY,
           kTolTc);
    // The same inputs again: bitwise the same (a race shows up as a moving result).
    const Tensor h1 = down(o1), h2 = down(g_gpu->attention_mha_causal(qg, kg, lg, Dl, c.Dv, sc.ab, sc.key_row0, scale));
    record("attention_mha_causal fast", "tc repeat bitwise, " + what,
           std::equal(h1.f32(), h1.f32() + h1.numel(), h2.f32()) ? 0.0 : 1.0, 0.0);
    // The rope key from bf16 rows (what a gather could hand over): the same values, the same result.
    Tensor o_b = g_gpu->attention_mha_causal(qg, kg, up(lb), Dl, c.Dv, sc.ab, sc.key_row0, scale);
    record("attention_mha_causal fast", "bf16 rope rows, " + what, cmp(o_b, ref_b).rel, kTolTc);
    g_gpu->set_gemm_mode(GemmMode::Exact);
    if (c.H <= 20) {  // the SIMT fallback's scratch is T x H x context floats
      Tensor ref = g_cpu->attention_mha_causal(q, kvb, lat, Dl, c.Dv, sc.ab, sc.key_row0, scale);
      Tensor o = g_gpu->attention_mha_causal(up(q), up(kvb), up(lat), Dl, c.Dv, sc.ab, sc.key_row0, scale);
      record("attention_mha_causal exact", fmt::format("{}: {}", g_gpu->last_mha_path(), what), cmp(o, ref).rel, kTolF32);
    }
  }
}

// ---------------------------------------------------------------- indexer
// Checks a GPU top-k against exact (double) scores: ascending, distinct, causal, the right count, and no
// unselected position scoring clearly above a selected one. Returns the number of rows equal to the CPU's.
struct TopkResult {
  double violation = 0;  // max over rows of (best unselected - worst selected) / max |score|, if positive
  bool structure_ok = true;
  int64_t rows = 0, equal_rows = 0;
};
TopkResult check_topk(const Tensor& gpu_idx, const Tensor& cpu_idx, const Tensor& q, const Tensor& w, const Tensor& kp,
                      const AttnBatch& ab, int64_t heads, int64_t dim, int64_t topk) {
  TopkResult r;
  const int64_t T = gpu_idx.dim(0), K = gpu_idx.dim(1);
  if (cpu_idx.dim(1) != K) {
    r.structure_ok = false;
    return r;
  }
  for (int64_t t = 0; t < T; ++t) {
    const int32_t p = ab.pos_of_token[size_t(t)], s = ab.seq_of_token[size_t(t)];
    const int32_t* g = gpu_idx.data<int32_t>() + t * K;
    const int32_t* c = cpu_idx.i32() + t * K;
    ++r.rows;
    r.equal_rows += std::equal(g, g + K, c);
    const int64_t want = std::min<int64_t>(topk, p + 1);
    if (!topk_row_well_formed(g, K, p, topk)) r.structure_ok = false;
    if (!r.structure_ok || p + 1 <= topk) continue;
    std::vector<double> sc(size_t(p + 1));
    double amax = 0;
    for (int32_t j = 0; j <= p; ++j) {
      const float* kj = kp.f32() + int64_t(ab.slot(s, j)) * dim;
      double acc = 0;
      for (int64_t h = 0; h < heads; ++h) {
        double d = 0;
        for (int64_t i = 0; i < dim; ++i) d += double(q.f32()[(t * heads + h) * dim + i]) * kj[i];
        acc += double(w.f32()[t * heads + h]) * std::max(0.0, d);
      }
      sc[size_t(j)] = acc;
      amax = std::max(amax, std::fabs(acc));
    }
    std::vector<char> sel(size_t(p + 1), 0);
    for (int64_t j = 0; j < want; ++j) sel[size_t(g[j])] = 1;
    double worst_sel = INFINITY, best_unsel = -INFINITY;
    for (int32_t j = 0; j <= p; ++j)
      (sel[size_t(j)] ? worst_sel : best_unsel) =
          sel[size_t(j)] ? std::min(worst_sel, sc[size_t(j)]) : std::max(best_unsel, sc[size_t(j)]);
    if (amax > 0) r.violation = std::max(r.violation, (best_unsel - worst_sel) / amax);
  }
  return r;
}

void check_indexer() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t heads, dim, topk;
    int tie;  // 0: random, 1: identical keys, 2: zero weights, 3: negative weights
  };
  const std::vector<Case> cases = {
      {"tiny 3 seqs", {40, 23, 64}, {40, 23, 64}, 4, 16, 32, 16, 0},
      {"decode 3 seqs ctx 2047..5000", {2047, 2049, 5000}, {1, 1, 1}, 64, 64, 128, 2048, 0},
      {"chunk 40 of ctx 3000", {3000}, {40}, 16, 64, 128, 2048, 0},
      {"decode 2 seqs ctx 20000, 40000 (split top-k)", {20000, 40000}, {1, 2}, 64, 64, 128, 2048, 0},
      {"identical keys, ctx 30000 (split top-k ties)", {30000}, {2}, 64, 16, 32, 512, 1},
      {"identical keys (all tie)", {300, 70}, {5, 70}, 4, 16, 32, 16, 1},
      {"zero weights (all tie)", {300}, {7}, 4, 16, 32, 64, 2},
      {"zero queries, negative weights (+-0)", {500}, {9}, 8, 16, 32, 64, 3},
  };
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, 0);
    Tensor q = randn({sc.T, c.heads * c.dim}), w = randn({sc.T, c.heads}, 0.1f), kp = randn({sc.rows, c.dim});
    if (c.tie == 1)
      for (int64_t r = 1; r < sc.rows; ++r) std::copy_n(kp.f32(), c.dim, kp.f32() + r * c.dim);
    if (c.tie == 2) std::fill(w.f32(), w.f32() + w.numel(), 0.0f);
    if (c.tie == 3) {  // every dot product 0, weights negative: scores are +0 / -0 and must tie
      for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = -std::fabs(w.f32()[i]);
      std::fill(q.f32(), q.f32() + q.numel(), 0.0f);
    }
    Tensor ref = g_cpu->indexer_topk(q, w, kp, sc.ab, c.heads, c.dim, c.topk);
    Tensor got = g_gpu->to_host(g_gpu->indexer_topk(up(q), up(w), up(kp), sc.ab, c.heads, c.dim, c.topk));
    TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, c.heads, c.dim, c.topk);
    const double err = r.structure_ok ? r.violation : INFINITY;
    record("indexer_topk", fmt::format("{} (T={}, {}/{} rows = CPU)", c.name, sc.T, r.equal_rows, r.rows), err,
           c.tie ? 0.0 : 1e-5);
    if (c.tie) record("indexer_topk ties = CPU", c.name, r.equal_rows == r.rows ? 0.0 : 1.0, 0.0);
  }
  // FP8 numerics: Hadamard + e4m3 rounding, bit-identical to the CPU: the warp-per-row kernel (32..256) and
  // the block kernel (16, 512).
  for (int64_t n : {16, 32, 64, 128, 256, 512}) {
    Tensor x = randn({300, n}, 3.f);
    for (int64_t r = 0; r < 300; r += 7)
      for (int64_t i = 0; i < n; ++i) x.f32()[r * n + i] *= 1e-3f;  // some tiny rows (amax clamp)
    Tensor xc = Tensor::empty(x.shape(), DType::F32);
    std::copy_n(x.f32(), x.numel(), xc.f32());
    Tensor xg = up(x);
    g_gpu->hadamard_fp8_round(xg, n);
    g_cpu->hadamard_fp8_round(xc, n);
    record("hadamard_fp8_round", fmt::format("300 rows of {} (bitwise)", n), cmp(xg, xc).maxrel, 0.0);
  }
}

// The tensor-core scores (fast GEMM mode, head_dim 128, <= 64 heads) against exact (double) scores, and
// their top-k as check_indexer does. Two value regimes: arbitrary fp32 (IndexerMode::Fp32: the kernel's
// hi + lo split) and Hadamard + e4m3-rounded q and keys (IndexerMode::Fp8: exact in bf16, one MMA per
// product). Score error: max over scored rows of max_j |gpu - exact| / max_j sum_h |w_h| relu(q_h . k_j)
// (rows normalised by the magnitude of their terms: with random-sign weights a score can cancel to far
// below its terms, and rounding errors scale with the terms); NaN or an unwritten (poisoned) score fails.
// Exact scores of row t and, in *mag, the largest sum_h |w_h| relu(q_h . k_j) of the row.
std::vector<double> exact_scores(const Tensor& q, const Tensor& w, const Tensor& kp, const AttnBatch& ab, int64_t heads,
                                 int64_t dim, int64_t t, int32_t p, double* mag) {
  std::vector<double> sc(size_t(p + 1)), mg(size_t(p + 1));
  const int32_t s = ab.seq_of_token[size_t(t)];
#pragma omp parallel for schedule(static)
  for (int32_t j = 0; j <= p; ++j) {
    const float* kj = kp.f32() + int64_t(ab.slot(s, j)) * dim;
    double acc = 0, m = 0;
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q.f32() + (t * heads + h) * dim;
      double d = 0;
      for (int64_t i = 0; i < dim; ++i) d += double(qh[i]) * kj[i];
      acc += double(w.f32()[t * heads + h]) * std::max(0.0, d);
      m += std::fabs(double(w.f32()[t * heads + h])) * std::max(0.0, d);
    }
    sc[size_t(j)] = acc, mg[size_t(j)] = m;
  }
  *mag = *std::max_element(mg.begin(), mg.end());
  return sc;
}

void check_indexer_tc() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t heads, topk;
    bool identical_keys = false;
  };
  const std::vector<Case> cases = {
      {"decode 1, ctx 9000", {9000}, {1}, 64, 64, 2048},
      {"decode 8 seqs, ctx 2049..33000", {2049, 3000, 4100, 5000, 8191, 10000, 20000, 33000}, {1, 1, 1, 1, 1, 1, 1, 1}, 64, 64, 2048},
      {"decode 3 short rows (<= top-k unscored) + 1", {100, 2048, 2049, 2200}, {1, 1, 1, 1}, 16, 64, 2048},
      {"prefill chunk 200 of one seq, pos 500..699", {700}, {200}, 64, 64, 256},
      {"prefill chunk 131 (partial 2-query block)", {650}, {131}, 16, 64, 256},
      {"mixed: chunk 150 + 3 decodes", {900, 3000, 700, 300}, {150, 1, 1, 1}, 16, 64, 256},
      {"mixed, 32 heads", {900, 1500}, {150, 2}, 64, 32, 256},
      {"decode 2, page 1, 48 heads", {1000, 1777}, {1, 1}, 1, 48, 512},
      {"identical keys (ties), chunk 140", {600}, {140}, 16, 64, 256, true},
  };
  g_gpu->set_gemm_mode(GemmMode::Fast);
  const int64_t dim = 128;
  for (const auto& c : cases)
    for (int fp8 = 0; fp8 < 2; ++fp8) {
      Scenario sc = make_scenario(c.ctx, c.n_new, c.page, 0);
      Tensor q = randn({sc.T, c.heads * dim}), w = randn({sc.T, c.heads}, 0.1f), kp = randn({sc.rows, dim});
      if (c.identical_keys)
        for (int64_t r = 1; r < sc.rows; ++r) std::copy_n(kp.f32(), dim, kp.f32() + r * dim);
      if (fp8) {  // the model's IndexerMode::Fp8 inputs (the CPU backend's rounding: the same bits)
        g_cpu->hadamard_fp8_round(q, dim);
        g_cpu->hadamard_fp8_round(kp, dim);
      }
      const std::string what = fmt::format("{}, {} (T={}, heads {})", c.name, fp8 ? "e4m3" : "fp32", sc.T, c.heads);
      Tensor qg = up(q), wg = up(w), kg = up(kp);
      // scores, both kernels against the exact ones
      Tensor s_tc = down(g_gpu->indexer_scores(qg, wg, kg, sc.ab, c.heads, dim, c.topk));
      const bool tc_path = std::string(g_gpu->last_indexer_path()) == "tc";
      g_gpu->set_gemm_mode(GemmMode::Exact);
      Tensor s_simt = down(g_gpu->indexer_scores(qg, wg, kg, sc.ab, c.heads, dim, c.topk));
      g_gpu->set_gemm_mode(GemmMode::Fast);
      const int64_t L = s_tc.dim(1);
      double e_tc = 0, e_simt = 0;
      int64_t scored = 0;
      for (int64_t t = 0; t < sc.T; ++t) {
        const int32_t p = sc.ab.pos_of_token[size_t(t)];
        if (p + 1 <= c.topk) continue;
        ++scored;
        double amax = 0, dt = 0, ds = 0;
        const std::vector<double> ex = exact_scores(q, w, kp, sc.ab, c.heads, dim, t, p, &amax);
        for (int32_t j = 0; j <= p; ++j) {
          const double a = s_tc.f32()[t * L + j], b = s_simt.f32()[t * L + j];
          dt = std::isfinite(a) ? std::max(dt, std::fabs(a - ex[size_t(j)])) : INFINITY;
          ds = std::isfinite(b) ? std::max(ds, std::fabs(b - ex[size_t(j)])) : INFINITY;
        }
        const double norm = amax > 0 ? amax : 1.0;
        e_tc = std::max(e_tc, dt / norm), e_simt = std::max(e_simt, ds / norm);
      }
      const double tol = fp8 ? 1e-5 : 5e-5;
      record("indexer scores tc", fmt::format("{}, {} rows", what, scored), tc_path ? e_tc : INFINITY, tol);
      record("indexer scores simt", fmt::format("{}, {} rows", what, scored), e_simt, kTolF32);
      // top-k through the tensor-core scores
      Tensor ref = g_cpu->indexer_topk(q, w, kp, sc.ab, c.heads, dim, c.topk);
      Tensor got = g_gpu->to_host(g_gpu->indexer_topk(qg, wg, kg, sc.ab, c.heads, dim, c.topk));
      TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, c.heads, dim, c.topk);
      record("indexer_topk tc", fmt::format("{} ({}/{} rows = CPU)", what, r.equal_rows, r.rows),
             r.structure_ok && tc_path ? r.violation : INFINITY, c.identical_keys ? 0.0 : tol);
      if (c.identical_keys) record("indexer_topk tc ties = CPU", what, r.equal_rows == r.rows ? 0.0 : 1.0, 0.0);
    }
  // Shapes the tensor-core kernel does not take stay on the SIMT kernel in the fast mode.
  Scenario sc = make_scenario({3000}, {2}, 16, 0);
  Tensor q = randn({sc.T, 16 * 64}), w = randn({sc.T, 16}, 0.1f), kp = randn({sc.rows, 64});
  Tensor ref = g_cpu->indexer_topk(q, w, kp, sc.ab, 16, 64, 512);
  Tensor got = g_gpu->to_host(g_gpu->indexer_topk(up(q), up(w), up(kp), sc.ab, 16, 64, 512));
  TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, 16, 64, 512);
  record("indexer_topk fast, head_dim 64", fmt::format("SIMT fallback ({}/{} rows = CPU)", r.equal_rows, r.rows),
         r.structure_ok && std::string(g_gpu->last_indexer_path()) == "simt" ? r.violation : INFINITY, 1e-5);
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

// ---------------------------------------------------------------- FP8 KV pools (backend/kv_fp8.h)
// The quantising write and the dequantising gather bit for bit against the CPU; the absorbed MLA (SIMT
// in the exact mode, tensor cores in the fast mode) and the indexer (both score kernels, top-k) over
// packed pools against the CPU backend over the same packed pool (its values bf16(code x scale)).
namespace {
bool same_bytes(const Tensor& gpu, const Tensor& cpu) {
  const Tensor h = g_gpu->to_host(gpu);
  return h.nbytes() == cpu.nbytes() && std::memcmp(h.raw(), cpu.raw(), cpu.nbytes()) == 0;
}
// Random rows quantised into a pool of `rows` rows on both backends (every row written).
struct BothFp8Pool {
  Tensor c, g;
  BothFp8Pool(const KvFp8Layout& L, int64_t rows, float amp) {
    Tensor quant = randn({rows, L.quant_dim}, amp), rest = randn({rows, std::max<int64_t>(L.bf16_dim, 1)});
    std::vector<int32_t> slots(static_cast<size_t>(rows));
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng());
    c = g_cpu->alloc({rows, L.bytes()}, DType::U8);
    g = g_gpu->alloc({rows, L.bytes()}, DType::U8);
    g_cpu->cache_write_fp8(c, L, quant, L.bf16_dim ? &rest : nullptr, slots);
    Tensor rg = up(rest);
    g_gpu->cache_write_fp8(g, L, up(quant), L.bf16_dim ? &rg : nullptr, slots);
  }
};
}  // namespace

void check_kv_fp8() {
  for (const KvFp8Layout& L : {KvFp8Layout::latent(512, 64), KvFp8Layout::latent(256, 64), KvFp8Layout::latent(64, 16),
                               KvFp8Layout::indexer(128), KvFp8Layout::indexer(32)}) {
    const int64_t rows = 777;
    BothFp8Pool p(L, rows, 3.f);
    const std::string what = fmt::format("{} e4m3 + {} bf16 ({} B rows)", L.quant_dim, L.bf16_dim, L.bytes());
    record("cache_write_fp8", what + ", 777 scattered rows (bitwise)", same_bytes(p.g, p.c) ? 0.0 : 1.0, 0.0);
    std::vector<int32_t> gs(200);
    for (auto& s : gs) s = int32_t(rng()() % uint32_t(rows));
    record("cache_gather_fp8", what + ", 200 rows (bitwise)",
           cmp(g_gpu->cache_gather_fp8(p.g, L, gs), g_cpu->cache_gather_fp8(p.c, L, gs)).maxrel, 0.0);
  }
  {  // the kernels' fast dequantisation equals the plain one for every code and scale
    int n = 0;
    const long long bad = kv_dequant_mismatches(&n);
    record("kv_bf16x8 (fast dequantisation)", fmt::format("every e4m3 code x {} scales (bitwise)", n), double(bad), 0.0);
  }
  // Padding slots (-1) write nothing.
  {
    const KvFp8Layout L = KvFp8Layout::latent(512, 64);
    Tensor pg = g_gpu->alloc({4, L.bytes()}, DType::U8), rest = up(randn({2, 64}));
    g_gpu->cache_write_fp8(pg, L, up(randn({2, 512})), &rest, {-1, 2});
    const Tensor h = g_gpu->to_host(pg);
    bool zero = true;
    for (int64_t b = 0; b < 2 * L.bytes(); ++b) zero &= h.data<uint8_t>()[b] == 0;
    record("cache_write_fp8", "slot -1 writes nothing", zero ? 0.0 : 1.0, 0.0);
  }

  struct MlaCase {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t sparse_k, H, Dl, Dr, width;
  };
  const std::vector<MlaCase> mla = {
      {"decode 4 seqs, ctx 100..5000, sparse 2048", {100, 2048, 2049, 5000}, {1, 1, 1, 1}, 64, 2048, 128, 512, 64, 0},
      {"decode ctx 5/40/1000, width 2048", {5, 40, 1000}, {1, 1, 1}, 64, 2048, 128, 512, 64, 2048},
      {"chunk 33 + decodes, causal", {300, 77, 129}, {33, 1, 1}, 16, 0, 16, 512, 64, 0},
      {"prefill 80 of 600, sparse 512", {600}, {80}, 64, 512, 100, 512, 64, 0},
      {"demo widths (SIMT only)", {33, 500, 2100}, {1, 1, 1}, 64, 2048, 4, 256, 64, 0},
      {"tiny widths", {40, 23, 64}, {13, 1, 64}, 4, 0, 4, 64, 16, 0},
  };
  for (const auto& c : mla) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, c.sparse_k, c.width);
    const KvFp8Layout L = KvFp8Layout::latent(c.Dl, c.Dr);
    BothFp8Pool p(L, sc.rows, 1.f);
    const int64_t D = c.Dl + c.Dr;
    Tensor q = randn({sc.T, c.H, D}, 0.3f);
    const float scale = 1.0f / std::sqrt(float(D));
    const std::string what = fmt::format("FP8 pool, {} (T={} H={} K={})", c.name, sc.T, c.H, sc.K);
    Tensor ref = g_cpu->mla_attention_absorbed(q, p.c, sc.index, sc.ab, c.Dl, scale);
    Tensor qg = up(q), ig = up(sc.index);
    record("mla_attention_absorbed", what, cmp(g_gpu->mla_attention_absorbed(qg, p.g, ig, sc.ab, c.Dl, scale), ref).rel,
           kTolF32);
    g_gpu->set_gemm_mode(GemmMode::Fast);
    const bool want_tc = cuda::mla_tc_takes_fp8(int(D), int(c.Dl), int(L.bytes()));
    Tensor o = g_gpu->mla_attention_absorbed(qg, p.g, ig, sc.ab, c.Dl, scale);
    const std::string path = g_gpu->last_mla_path();
    record("mla_attention_absorbed fast", fmt::format("{}: {}", path, what),
           path == (want_tc ? "tc" : "simt") ? cmp(o, ref).rel : INFINITY, want_tc ? 1e-4 : kTolF32);
    g_gpu->set_gemm_mode(GemmMode::Exact);
  }

  struct IdxCase {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t heads, dim, topk;
  };
  const std::vector<IdxCase> idx = {
      {"decode 8 seqs, ctx 2049..33000", {2049, 3000, 4100, 5000, 8191, 10000, 20000, 33000}, {1, 1, 1, 1, 1, 1, 1, 1},
       64, 64, 128, 2048},
      {"prefill chunk 200, pos 500..699", {700}, {200}, 64, 64, 128, 256},
      {"mixed: chunk 150 + 3 decodes", {900, 3000, 700, 300}, {150, 1, 1, 1}, 16, 64, 128, 256},
      {"tiny widths (SIMT)", {40, 23, 64}, {40, 23, 64}, 4, 16, 32, 16},
  };
  for (const auto& c : idx) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, 0);
    const KvFp8Layout L = KvFp8Layout::indexer(c.dim);
    BothFp8Pool p(L, sc.rows, 2.f);
    std::vector<int32_t> all(size_t(sc.rows));
    std::iota(all.begin(), all.end(), 0);
    const Tensor kp = g_cpu->cache_gather_fp8(p.c, L, all);  // the keys' values, for the exact scores
    Tensor q = randn({sc.T, c.heads * c.dim}), w = randn({sc.T, c.heads}, 0.1f);
    g_cpu->hadamard_fp8_round(q, c.dim);  // IndexerMode::Fp8's queries
    Tensor qg = up(q), wg = up(w);
    for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
      g_gpu->set_gemm_mode(mode);
      const std::string what = fmt::format("FP8 keys, {} (T={}, heads {})", c.name, sc.T, c.heads);
      Tensor s = down(g_gpu->indexer_scores(qg, wg, p.g, sc.ab, c.heads, c.dim, c.topk));
      const std::string path = g_gpu->last_indexer_path();
      const int64_t Ls = s.dim(1);
      double err = 0;
      for (int64_t t = 0; t < sc.T; ++t) {
        const int32_t pp = sc.ab.pos_of_token[size_t(t)];
        if (pp + 1 <= c.topk) continue;
        double amax = 0, d = 0;
        const std::vector<double> ex = exact_scores(q, w, kp, sc.ab, c.heads, c.dim, t, pp, &amax);
        for (int32_t j = 0; j <= pp; ++j) {
          const double a = s.f32()[t * Ls + j];
          d = std::isfinite(a) ? std::max(d, std::fabs(a - ex[size_t(j)])) : INFINITY;
        }
        err = std::max(err, d / (amax > 0 ? amax : 1.0));
      }
      record("indexer scores " + path, what, err, path == "tc" ? 1e-5 : kTolF32);
      Tensor ref = g_cpu->indexer_topk(q, w, p.c, sc.ab, c.heads, c.dim, c.topk);
      Tensor got = g_gpu->to_host(g_gpu->indexer_topk(qg, wg, p.g, sc.ab, c.heads, c.dim, c.topk));
      TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, c.heads, c.dim, c.topk);
      record("indexer_topk " + path, fmt::format("{} ({}/{} rows = CPU)", what, r.equal_rows, r.rows),
             r.structure_ok ? r.violation : INFINITY, 1e-5);
    }
    g_gpu->set_gemm_mode(GemmMode::Exact);
  }
}
}  // namespace opcheck
