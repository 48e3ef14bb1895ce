// The FP8 wgmma indexer scores (k_indexer_wgmma.cu, IndexerMode::Fp8 values) against references: exact
// (double) scores on the host for the small cases, the mma.sync kernel (k_indexer_tc.cu: exact products
// for these values, fp32 sums, ~1e-6 of the exact scores) for the large ones; their top-k against the CPU
// backend's (small) or the tc kernel's (large). Fp32 pools holding Fp8-mode keys and packed FP8 pools (132-
// byte rows) of the same keys; prefill chunks of 1..8192 queries over contexts up to 16K, decode batches of
// mixed sequences, chunk + decodes, page tables of scattered pages (1, 16 or 64 rows), 16..64 heads. Then
// the kernel choice: Auto, the pins, the exact mode, DSSERVE_INDEXER_KERNEL.
//
// Score error: |s - ref| / C(t, j), C = sum_h |w_h| ||q_h|| ||k_j|| (>= sum_h |w_h| sum_i |q_hi k_ji|, the
// size of the terms). Tolerance 1e-3: the products are exact, but the tensor cores' FP8 accumulation keeps
// ~14 bits of each 32-term step's sum (DeepSeek-V3 report, 3.3.2): 4 steps x 2^-13 ~ 5e-4 of the terms at
// worst; fp32 accumulation would give ~1e-7. The observed maximum is printed. NaN, or a scored entry left
// unwritten (the check backend poisons allocations with NaN), fails.
// Top-k: rows equal to the reference, or differing only between keys whose reference scores lie within
// 2 x 1e-3 x max_j C(t, j) of each other (the two sides' bounds), plus the structure (ascending, distinct,
// causal, the right count).
#include <omp.h>

#include <cstdlib>
#include <numeric>

#include "attn_scenario.h"
#include "ops_check_util.h"

namespace opcheck {

namespace {
constexpr int64_t kDim = 128;
constexpr double kTolScore = 1e-3;

// Row norms of x [rows, kDim].
std::vector<double> row_norms(const Tensor& x) {
  std::vector<double> n(size_t(x.numel() / kDim));
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < int64_t(n.size()); ++r) {
    double s = 0;
    for (int64_t i = 0; i < kDim; ++i) s += double(x.f32()[r * kDim + i]) * x.f32()[r * kDim + i];
    n[size_t(r)] = std::sqrt(s);
  }
  return n;
}

// Exact scores of every scored row (p + 1 > topk), [T][p + 1] (empty rows for the others).
std::vector<std::vector<double>> exact_rows(const Tensor& q, const Tensor& w, const Tensor& kp, const AttnBatch& ab,
                                            int64_t heads, int64_t topk) {
  const int64_t T = int64_t(ab.pos_of_token.size());
  std::vector<std::vector<double>> out(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const int32_t p = ab.pos_of_token[size_t(t)], s = ab.seq_of_token[size_t(t)];
    if (p + 1 <= topk) continue;
    auto& r = out[size_t(t)];
    r.resize(size_t(p + 1));
#pragma omp parallel for schedule(static)
    for (int32_t j = 0; j <= p; ++j) {
      const float* kj = kp.f32() + int64_t(ab.slot(s, j)) * kDim;
      double acc = 0;
      for (int64_t h = 0; h < heads; ++h) {
        const float* qh = q.f32() + (t * heads + h) * kDim;
        double d = 0;
        for (int64_t i = 0; i < kDim; ++i) d += double(qh[i]) * kj[i];
        acc += double(w.f32()[t * heads + h]) * std::max(0.0, d);
      }
      r[size_t(j)] = acc;
    }
  }
  return out;
}

struct Case {
  const char* name;
  std::vector<int32_t> ctx, n_new;
  int32_t page;
  int64_t heads, topk;
  bool big = false;             // reference: the tc kernel (the host would take minutes)
  bool identical_keys = false;  // every score of a row ties
};

struct Inputs {
  Scenario sc;
  Tensor q, w, kp;        // host: Fp8-mode values
  Tensor qg, wg, kg, kf;  // device: q, w, the fp32 pool, the packed FP8 pool of the same keys
};

Inputs make_inputs(const Case& c) {
  Inputs in;
  in.sc = make_scenario(c.ctx, c.n_new, c.page, 0);
  const int64_t T = in.sc.T, rows = in.sc.rows;
  in.q = randn({T, c.heads * kDim});
  in.w = randn({T, c.heads}, 0.1f);
  in.kp = randn({rows, kDim});
  if (c.identical_keys)
    for (int64_t r = 1; r < rows; ++r) std::copy_n(in.kp.f32(), kDim, in.kp.f32() + r * kDim);
  // IndexerMode::Fp8's values (the CPU's rounding: the GPU's bits)
  g_cpu->hadamard_fp8_round(in.q, kDim);
  g_cpu->hadamard_fp8_round(in.kp, kDim);
  in.qg = up(in.q), in.wg = up(in.w), in.kg = up(in.kp);
  const KvFp8Layout L = KvFp8Layout::indexer(kDim);
  in.kf = g_gpu->alloc({rows, L.bytes()}, DType::U8);
  std::vector<int32_t> slots(static_cast<size_t>(rows));
  std::iota(slots.begin(), slots.end(), 0);
  g_gpu->cache_write_fp8(in.kf, L, in.kg, nullptr, slots);  // e4m3 x power-of-two keys are stored exactly
  return in;
}

Tensor scores_with(const Inputs& in, const Case& c, bool packed, cuda::IndexerKernel k, std::string* path) {
  g_gpu->set_indexer_kernel(k);
  Tensor s = down(g_gpu->indexer_scores(in.qg, in.wg, packed ? in.kf : in.kg, in.sc.ab, c.heads, kDim, c.topk, true));
  *path = g_gpu->last_indexer_path();
  return s;
}
Tensor topk_with(const Inputs& in, const Case& c, bool packed, cuda::IndexerKernel k, std::string* path) {
  g_gpu->set_indexer_kernel(k);
  Tensor i = g_gpu->to_host(g_gpu->indexer_topk(in.qg, in.wg, packed ? in.kf : in.kg, in.sc.ab, c.heads, kDim, c.topk, true));
  *path = g_gpu->last_indexer_path();
  return i;
}

// Top-k of the wgmma scores against a reference selection and reference scores ref(t, j).
struct TopkCmp {
  bool structure_ok = true;
  int64_t rows = 0, equal = 0;
  double violation = 0;  // max over rows of (best unselected - worst selected) / max_j C(t, j), if positive
};
template <typename RefScore>
TopkCmp compare_topk(const Tensor& got, const Tensor& ref, const AttnBatch& ab, int64_t topk,
                     const std::vector<double>& cmax, RefScore score) {
  TopkCmp r;
  const int64_t T = got.dim(0), K = got.dim(1);
  if (ref.dim(1) != K || ref.dim(0) != T) return TopkCmp{false};
  for (int64_t t = 0; t < T; ++t) {
    const int32_t p = ab.pos_of_token[size_t(t)];
    const int32_t* g = got.data<int32_t>() + t * K;
    const int32_t* c = ref.data<int32_t>() + t * K;
    ++r.rows;
    const bool eq = std::equal(g, g + K, c);
    r.equal += eq;
    const int64_t want = std::min<int64_t>(topk, p + 1);
    if (!topk_row_well_formed(g, K, p, topk)) r.structure_ok = false;
    if (eq || !r.structure_ok || p + 1 <= topk) continue;
    std::vector<char> sel(size_t(p + 1), 0);
    for (int64_t j = 0; j < want; ++j) sel[size_t(g[j])] = 1;
    double worst_sel = INFINITY, best_unsel = -INFINITY;
    for (int32_t j = 0; j <= p; ++j) {
      const double v = score(t, j);
      if (sel[size_t(j)]) worst_sel = std::min(worst_sel, v);
      else best_unsel = std::max(best_unsel, v);
    }
    if (cmax[size_t(t)] > 0) r.violation = std::max(r.violation, (best_unsel - worst_sel) / cmax[size_t(t)]);
  }
  return r;
}
}  // namespace

void check_indexer_wgmma() {
  const std::vector<Case> cases = {
      {"decode 1, ctx 9000", {9000}, {1}, 64, 64, 2048},
      {"decode 8 seqs, ctx 2049..33000", {2049, 3000, 4100, 5000, 8191, 10000, 20000, 33000}, {1, 1, 1, 1, 1, 1, 1, 1},
       64, 64, 2048},
      {"decode 3 short rows (<= top-k unscored) + 1", {100, 2048, 2049, 2200}, {1, 1, 1, 1}, 16, 64, 2048},
      {"decode 2, page 1, 48 heads", {1000, 1777}, {1, 1}, 1, 48, 512},
      {"prefill chunk T=1 at pos 2999", {3000}, {1}, 16, 64, 256},
      {"prefill chunk 200, pos 500..699", {700}, {200}, 64, 64, 256},
      {"prefill chunk 131 (partial block), 16 heads", {650}, {131}, 16, 16, 256},
      {"mixed: chunk 150 + 3 decodes", {900, 3000, 700, 300}, {150, 1, 1, 1}, 16, 64, 256},
      {"mixed, 32 heads", {900, 1500}, {150, 2}, 64, 32, 256},
      {"prefill 1000 from pos 0, page 1", {1000}, {1000}, 1, 64, 128},
      {"identical keys (ties), chunk 140", {600}, {140}, 16, 64, 256, false, true},
      {"prefill 8192 from pos 0 (tc ref)", {8192}, {8192}, 64, 64, 2048, true},
      {"prefill 4096 at pos 12288..16383 (tc ref)", {16384}, {4096}, 64, 64, 2048, true},
      {"prefill 3000 + 2 decodes, ctx 16000 (tc ref)", {16000, 7000, 12000}, {3000, 1, 1}, 16, 64, 2048, true},
      {"decode 32 x ctx 4096 (tc ref)", std::vector<int32_t>(32, 4096), std::vector<int32_t>(32, 1), 64, 64, 2048,
       true},
  };
  g_gpu->set_gemm_mode(GemmMode::Fast);
  for (const auto& c : cases) {
    Inputs in = make_inputs(c);
    const Scenario& sc = in.sc;
    const int64_t T = sc.T;
    // C(t, j) = A_t ||k_j||, A_t = sum_h |w_h| ||q_h||
    const std::vector<double> qn = row_norms(in.q), kn = row_norms(in.kp);
    std::vector<double> At(size_t(T), 0), cmax(size_t(T), 0);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < c.heads; ++h) At[size_t(t)] += std::fabs(double(in.w.f32()[t * c.heads + h])) * qn[size_t(t * c.heads + h)];
      const int32_t s = sc.ab.seq_of_token[size_t(t)], p = sc.ab.pos_of_token[size_t(t)];
      double km = 0;
      for (int32_t j = 0; j <= p; ++j) km = std::max(km, kn[size_t(sc.ab.slot(s, j))]);
      cmax[size_t(t)] = At[size_t(t)] * km;
    }
    const std::vector<std::vector<double>> ex =
        c.big ? std::vector<std::vector<double>>() : exact_rows(in.q, in.w, in.kp, sc.ab, c.heads, c.topk);
    for (int packed = 0; packed < 2; ++packed) {
      const std::string what = fmt::format("{}, {} (T={}, heads {}, page {})", c.name, packed ? "FP8 pool" : "fp32 pool", T,
                                           c.heads, c.page);
      std::string p_wg, p_tc;
      const Tensor s_wg = scores_with(in, c, packed, cuda::IndexerKernel::Wgmma, &p_wg);
      const Tensor s_tc = scores_with(in, c, packed, cuda::IndexerKernel::Tc, &p_tc);
      const int64_t L = s_wg.dim(1);
      // scores: wgmma against the reference (exact or tc), tc against exact (small cases)
      double e_wg = 0, e_tc = 0;
      int64_t scored = 0;
      for (int64_t t = 0; t < T; ++t) {
        const int32_t p = sc.ab.pos_of_token[size_t(t)], s = sc.ab.seq_of_token[size_t(t)];
        if (p + 1 <= c.topk) continue;
        ++scored;
        for (int32_t j = 0; j <= p; ++j) {
          const double C = std::max(At[size_t(t)] * kn[size_t(sc.ab.slot(s, j))], 1e-30);
          const double a = s_wg.f32()[t * L + j], b = s_tc.f32()[t * L + j];
          const double ref = c.big ? b : ex[size_t(t)][size_t(j)];
          e_wg = std::isfinite(a) && std::isfinite(ref) ? std::max(e_wg, std::fabs(a - ref) / C) : INFINITY;
          if (!c.big) e_tc = std::isfinite(b) ? std::max(e_tc, std::fabs(b - ref) / C) : INFINITY;
        }
      }
      record("indexer scores wgmma", fmt::format("vs {}, {}, {} rows", c.big ? "tc" : "exact", what, scored),
             p_wg == "wgmma" && p_tc == "tc" ? e_wg : INFINITY, kTolScore);
      if (!c.big) record("indexer scores tc (same C)", fmt::format("vs exact, {}", what), e_tc, 1e-5);
      // the same inputs again: bitwise the same (a race shows up as a moving result)
      std::string p2;
      const Tensor s_wg2 = scores_with(in, c, packed, cuda::IndexerKernel::Wgmma, &p2);
      bool same = true;
      for (int64_t t = 0; t < T && same; ++t) {
        const int32_t p = sc.ab.pos_of_token[size_t(t)];
        if (p + 1 > c.topk)
          same = std::memcmp(s_wg.f32() + t * L, s_wg2.f32() + t * L, size_t(p + 1) * sizeof(float)) == 0;
      }
      record("indexer scores wgmma", "repeat bitwise, " + what, same ? 0.0 : 1.0, 0.0);
      // top-k downstream
      std::string pk;
      const Tensor i_wg = topk_with(in, c, packed, cuda::IndexerKernel::Wgmma, &pk);
      std::string pr = "cpu";
      const Tensor i_ref = c.big ? topk_with(in, c, packed, cuda::IndexerKernel::Tc, &pr)
                                 : g_cpu->indexer_topk(in.q, in.w, in.kp, sc.ab, c.heads, kDim, c.topk);
      const TopkCmp r = compare_topk(i_wg, i_ref, sc.ab, c.topk, cmax, [&](int64_t t, int32_t j) {
        return c.big ? double(s_tc.f32()[t * L + j]) : ex[size_t(t)][size_t(j)];
      });
      record("indexer_topk wgmma", fmt::format("vs {} ({}/{} rows equal), {}", pr, r.equal, r.rows, what),
             r.structure_ok && pk == "wgmma" ? r.violation : INFINITY, c.identical_keys ? 0.0 : 2 * kTolScore);
      if (c.identical_keys) record("indexer_topk wgmma ties", what, r.equal == r.rows ? 0.0 : 1.0, 0.0);
    }
  }

  // The choice. Auto: wgmma for prefill-like chunks of Fp8-mode values, tc for decode batches and for
  // fp32-mode values; pins; the exact mode stays SIMT whatever the pin.
  {
    const Case pre{"prefill 300", {1000}, {300}, 64, 64, 256}, dec{"decode 4", {3000, 3000, 3000, 3000}, {1, 1, 1, 1}, 64, 64, 256};
    const Inputs a = make_inputs(pre), b = make_inputs(dec);
    auto path_of = [&](const Inputs& in, const Case& c, bool fp8_values) {
      g_gpu->indexer_topk(in.qg, in.wg, in.kg, in.sc.ab, c.heads, kDim, c.topk, fp8_values);
      return std::string(g_gpu->last_indexer_path());
    };
    auto expect = [&](const char* what, const std::string& got, const char* want) {
      record("indexer kernel choice", fmt::format("{}: {} (want {})", what, got, want), got == want ? 0.0 : 1.0, 0.0);
    };
    g_gpu->set_indexer_kernel(cuda::IndexerKernel::Auto);
    expect("auto, prefill chunk 300, fp8 values", path_of(a, pre, true), "wgmma");
    expect("auto, prefill chunk 300, fp32 values", path_of(a, pre, false), "tc");
    expect("auto, decode 4 seqs, fp8 values", path_of(b, dec, true), "tc");
    g_gpu->set_indexer_kernel(cuda::IndexerKernel::Wgmma);
    expect("wgmma pinned, decode 4 seqs", path_of(b, dec, true), "wgmma");
    expect("wgmma pinned, fp32 values", path_of(a, pre, false), "tc");
    g_gpu->set_indexer_kernel(cuda::IndexerKernel::Tc);
    expect("tc pinned, prefill", path_of(a, pre, true), "tc");
    g_gpu->set_indexer_kernel(cuda::IndexerKernel::Simt);
    expect("simt pinned, prefill", path_of(a, pre, true), "simt");
    g_gpu->set_indexer_kernel(cuda::IndexerKernel::Wgmma);
    g_gpu->set_gemm_mode(GemmMode::Exact);
    expect("exact mode, wgmma pinned", path_of(a, pre, true), "simt");
    g_gpu->set_indexer_kernel(cuda::IndexerKernel::Auto);
    const char* names[] = {"auto", "wgmma", "tc", "simt"};
    const cuda::IndexerKernel kinds[] = {cuda::IndexerKernel::Auto, cuda::IndexerKernel::Wgmma, cuda::IndexerKernel::Tc,
                                         cuda::IndexerKernel::Simt};
    bool env_ok = true;
    for (int i = 0; i < 4; ++i) {
      setenv("DSSERVE_INDEXER_KERNEL", names[i], 1);
      env_ok &= cuda::options_from_env(0).indexer_kernel == kinds[i];
    }
    unsetenv("DSSERVE_INDEXER_KERNEL");
    record("indexer kernel choice", "DSSERVE_INDEXER_KERNEL=auto|wgmma|tc|simt parsed", env_ok ? 0.0 : 1.0, 0.0);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

}  // namespace opcheck
