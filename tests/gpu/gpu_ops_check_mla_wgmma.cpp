// The wgmma MLA kernel (k_mla_wgmma.cu, the fast mode's many-query path) against references: the CPU
// backend on the same bf16 pool values (small cases), the GPU's SIMT fp32 kernel (large ones), over
// scattered pages of 1 or 64 rows, key lists with -1 tails, whole -1 rows and positions past a sequence's
// page table (masked); then Auto's choice, the kernel pins and DSSERVE_MLA_KERNEL.
//
// Bounds (bf16 numerics: the query and the softmax weights P rounded to bf16, u = 2^-8):
//  - rel Frobenius error <= 1e-2. Expected ~2-3e-3: each weight carries a relative error of ~u / sqrt(3) (rms
//    of P's rounding) plus the score error of the rounded query; the output's relative error is about that.
//  - max |err| <= (exp(2E) (1 + u) - 1) max|v| + 1e-5 max|v|, E = scale u max||q|| max||k||: each score is off
//    by at most E (|sum dq_d k_d| <= u ||q|| ||k||), so each normalised weight by at most a factor
//    exp(2E) (1 + u); the output moves by at most that times the largest latent value. Worst-case, so loose;
//    the observed maximum is printed beside it.
#include <cstdlib>

#include "attn_scenario.h"
#include "ops_check_util.h"

namespace opcheck {

namespace {
constexpr double kU = 1.0 / 256;  // bf16 unit roundoff

// Fast, not Gaussian: uniform in [-a, a] (the large cases' queries: hundreds of millions of values).
void fill_uniform(float* p, int64_t n, float a, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = a * (float(x >> 40) * (2.0f / 16777216.0f) - 1.0f);
  }
}

double max_row_norm(const Tensor& t, int64_t width, int64_t cols) {
  double m = 0;
  for (int64_t r = 0; r < t.numel() / width; ++r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += double(t.f32()[r * width + c]) * t.f32()[r * width + c];
    m = std::max(m, std::sqrt(s));
  }
  return m;
}

struct WgmmaForm {
  cuda::MlaKernel pin;
  std::string path;  // last_mla_path() when it ran
};
const WgmmaForm kWgmmaForms[] = {{cuda::MlaKernel::Wgmma, "wgmma"}, {cuda::MlaKernel::WgmmaPair, "wgmma-pair"}};

struct Case {
  const char* name;
  std::vector<int32_t> ctx, n_new;
  int32_t page;
  int64_t sparse_k, H, Dl, Dr;
  int64_t width = 0;      // index rows padded with -1 to this width
  bool dead_row = false;  // the last query's list is all -1 (output 0)
  int mask_every = 0;     // every n-th entry of each list moved past the page table (masked)
  float q_scale = 0.3f;
  bool big = false;       // reference: the GPU's SIMT kernel (the CPU would take minutes)
};
}  // namespace

void check_mla_wgmma() {
  const std::vector<Case> cases = {
      {"T=1, ctx 3000 sparse 2048 (split-K)", {3000}, {1}, 64, 2048, 128, 512, 64},
      {"T=7 decodes, page 1, width 2048, dead row", {100, 64, 2049, 5000, 33, 700, 1500}, {1, 1, 1, 1, 1, 1, 1}, 1,
       2048, 64, 512, 64, 2048, true},
      {"T=64 causal prefill, K=64", {64}, {64}, 64, 0, 128, 512, 64},
      {"T=300, K=100 sparse, page 1, 100 heads, masked", {1000}, {300}, 1, 100, 100, 512, 64, 0, false, 9},
      {"T=300, K=100, page 64, peaked (q x3)", {800, 90}, {290, 10}, 64, 100, 64, 512, 64, 0, false, 0, 0.9f},
      {"T=200, sparse 2048 of 5000, masked, 65 heads", {5000, 3000}, {150, 50}, 64, 2048, 65, 512, 64, 0, false, 13},
      {"demo widths: T=40 chunk + decode, 36 heads", {700, 90}, {40, 1}, 16, 512, 36, 256, 64},
      {"demo widths: T=256, sparse 2048, page 1", {4000}, {256}, 1, 2048, 64, 256, 64, 0, false, 7},
      {"T=4096 prefill, sparse 2048 of 8192 (SIMT ref)", {8192}, {4096}, 64, 2048, 64, 512, 64, 0, false, 0, 0.3f,
       true},
  };
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, c.sparse_k, c.width);
    const int64_t T = sc.T, K = sc.K, D = c.Dl + c.Dr;
    if (c.dead_row) std::fill(sc.index.i32() + (T - 1) * K, sc.index.i32() + T * K, -1);
    // Masked entries: positions past the page table (the kernels skip them); the CPU gets the lists without.
    Tensor idx_cpu = sc.index;
    if (c.mask_every > 0) {
      idx_cpu = Tensor::empty({T, K}, DType::I32);
      for (int64_t t = 0; t < T; ++t) {
        const int32_t s = sc.ab.seq_of_token[size_t(t)];
        const int32_t past = int32_t(sc.ab.page_tables[size_t(s)].size()) * c.page + 3;
        int32_t* g = sc.index.i32() + t * K;
        int32_t* r = idx_cpu.i32() + t * K;
        int64_t n = 0;
        for (int64_t j = 0; j < K && g[j] >= 0; ++j) {
          if (j % c.mask_every == c.mask_every - 1) g[j] = past + int32_t(j);
          else r[n++] = g[j];
        }
        std::fill(r + n, r + K, -1);
      }
    }
    Tensor pool = randn({sc.rows, D});
    auto [pb, pw] = bf16_pair(pool);
    Tensor q = Tensor::empty({T, c.H, D}, DType::F32);
    if (c.big) fill_uniform(q.f32(), q.numel(), c.q_scale * 1.7320508f, uint64_t(T * K));  // std c.q_scale
    else fill_randn(q.f32(), q.numel(), c.q_scale);
    const float scale = 1.0f / std::sqrt(float(D));
    const std::string what = fmt::format("{} (T={} H={} K={} D={})", c.name, T, c.H, K, D);
    Tensor qg = up(q), ig = up(sc.index), pbg = up(pb);
    Tensor ref;
    if (c.big) {
      g_gpu->set_gemm_mode(GemmMode::Exact);
      ref = down(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale));
    } else {
      ref = g_cpu->mla_attention_absorbed(q, pw, idx_cpu, sc.ab, c.Dl, scale);
    }
    // Both wgmma forms on the same inputs and bounds (the same numerics; their summation orders differ).
    for (const WgmmaForm& form : kWgmmaForms) {
      const std::string op = std::string("mla_attention_absorbed ") + form.path;
      g_gpu->set_gemm_mode(GemmMode::Fast);
      g_gpu->set_mla_kernel(form.pin);
      const Tensor o = down(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale));
      const std::string path = g_gpu->last_mla_path();
      const Err e = compare(o, ref);
      record(op, fmt::format("rel, {}: {}", path, what), path == form.path ? e.rel : INFINITY, 1e-2);
      if (!(e.rel <= 1e-2)) {  // which warpgroup's columns are off (0: scores + O[:, :Dl/2], 1: O[:, Dl/2:])
        double d2[2] = {0, 0}, r2[2] = {0, 0};
        for (int64_t i = 0; i < o.numel(); ++i) {
          const int half = (i % c.Dl) >= c.Dl / 2;
          const double x = o.f32()[i], y = ref.f32()[i];
          d2[half] += (x - y) * (x - y), r2[half] += y * y;
        }
        std::printf("     columns [0, Dl/2): rel %.3e, [Dl/2, Dl): rel %.3e\n", std::sqrt(d2[0] / r2[0]),
                    std::sqrt(d2[1] / r2[1]));
      }
      // The worst-case bound from the roundings (file comment).
      double vmax = 0, dmax = 0;
      for (int64_t r = 0; r < pw.numel() / D; ++r)
        for (int64_t j = 0; j < c.Dl; ++j) vmax = std::max(vmax, double(std::fabs(pw.f32()[r * D + j])));
      for (int64_t i = 0; i < o.numel(); ++i) dmax = std::max(dmax, std::fabs(double(o.f32()[i]) - ref.f32()[i]));
      const double E = scale * kU * max_row_norm(q, D, D) * max_row_norm(pw, D, D);
      const double bound = (std::exp(2 * E) * (1 + kU) - 1) * vmax + 1e-5 * vmax;
      record(op, fmt::format("max abs (bound {:.2e}): {}", bound, what),
             e.nan ? INFINITY : dmax, bound);
      // Dead row: exactly zero.
      if (c.dead_row) {
        double z = 0;
        for (int64_t i = (T - 1) * c.H * c.Dl; i < T * c.H * c.Dl; ++i) z = std::max(z, double(std::fabs(o.f32()[i])));
        record(op, "all -1 row -> 0, " + what, z, 0.0);
      }
      // The same inputs again: bitwise the same (a race shows up as a moving result).
      const Tensor o2 = down(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale));
      record(op, "repeat bitwise, " + what,
             std::equal(o.f32(), o.f32() + o.numel(), o2.f32()) ? 0.0 : 1.0, 0.0);
      if (T <= 8) {  // decode batches with one key step per split (DSSERVE_MLA_SPLIT_STEPS=1): more, shorter slices
        const int steps_default = g_gpu->options().mla_split_steps;
        g_gpu->set_mla_split_steps(1);
        const Tensor o3 = down(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale));
        g_gpu->set_mla_split_steps(steps_default);
        record(op, "one key step a split, " + what,
               g_gpu->last_mla_path() == form.path ? compare(o3, ref).rel : INFINITY, 1e-2);
      }
    }
    // Auto: wgmma where mla_wgmma_wanted says so, else the mma.sync kernel.
    g_gpu->set_mla_kernel(cuda::MlaKernel::Auto);
    g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale);
    const std::string want = g_gpu->mla_wgmma_wanted(T, c.H, K) ? "wgmma" : "tc";
    record("mla_attention_absorbed auto", fmt::format("path {} (want {}): {}", g_gpu->last_mla_path(), want, what),
           want == g_gpu->last_mla_path() ? 0.0 : 1.0, 0.0);
    g_gpu->set_gemm_mode(GemmMode::Exact);
  }

  // Pins: each kernel on request; wgmma pinned on an FP8 pool falls back to tc; the exact mode stays SIMT.
  {
    Scenario sc = make_scenario({600}, {200}, 64, 256);
    const int64_t D = 576;
    Tensor pool = randn({sc.rows, D});
    auto [pb, pw] = bf16_pair(pool);
    Tensor qg = up(randn({sc.T, 128, D}, 0.3f)), ig = up(sc.index), pbg = up(pb);
    const float scale = 1.0f / std::sqrt(float(D));
    const std::pair<cuda::MlaKernel, const char*> pins[] = {
        {cuda::MlaKernel::Wgmma, "wgmma"}, {cuda::MlaKernel::WgmmaPair, "wgmma-pair"}, {cuda::MlaKernel::Tc, "tc"},
        {cuda::MlaKernel::Simt, "simt"}};
    for (GemmMode mode : {GemmMode::Fast, GemmMode::Exact})
      for (auto [k, name] : pins) {
        g_gpu->set_gemm_mode(mode);
        g_gpu->set_mla_kernel(k);
        g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, 512, scale);
        const std::string want = mode == GemmMode::Exact ? "simt" : name;
        record("mla kernel pin", fmt::format("{} mode, pinned {}: ran {}", mode == GemmMode::Exact ? "exact" : "fast",
                                             name, g_gpu->last_mla_path()),
               want == g_gpu->last_mla_path() ? 0.0 : 1.0, 0.0);
      }
    g_gpu->set_gemm_mode(GemmMode::Fast);
    g_gpu->set_mla_kernel(cuda::MlaKernel::Wgmma);
    Tensor p32 = up(pool);
    g_gpu->mla_attention_absorbed(qg, p32, ig, sc.ab, 512, scale);
    record("mla kernel pin", fmt::format("fast mode, wgmma pinned, fp32 pool: ran {}", g_gpu->last_mla_path()),
           std::string(g_gpu->last_mla_path()) == "simt" ? 0.0 : 1.0, 0.0);
    g_gpu->set_mla_kernel(cuda::MlaKernel::Auto);
    g_gpu->set_gemm_mode(GemmMode::Exact);
  }
  // DSSERVE_MLA_KERNEL -> CudaOptions::mla_kernel (what dsserve's backends read).
  {
    const char* old = std::getenv("DSSERVE_MLA_KERNEL");
    const std::string saved = old ? old : "";
    const std::pair<const char*, cuda::MlaKernel> vals[] = {{"auto", cuda::MlaKernel::Auto},
                                                            {"wgmma", cuda::MlaKernel::Wgmma},
                                                            {"wgmma-pair", cuda::MlaKernel::WgmmaPair},
                                                            {"tc", cuda::MlaKernel::Tc},
                                                            {"simt", cuda::MlaKernel::Simt}};
    for (auto [v, k] : vals) {
      setenv("DSSERVE_MLA_KERNEL", v, 1);
      record("DSSERVE_MLA_KERNEL", v, cuda::options_from_env(0).mla_kernel == k ? 0.0 : 1.0, 0.0);
    }
    setenv("DSSERVE_MLA_KERNEL", "fast", 1);
    bool threw = false;
    try {
      cuda::options_from_env(0);
    } catch (const std::exception&) {
      threw = true;
    }
    record("DSSERVE_MLA_KERNEL", "an unknown value is refused", threw ? 0.0 : 1.0, 0.0);
    if (old) setenv("DSSERVE_MLA_KERNEL", saved.c_str(), 1);
    else unsetenv("DSSERVE_MLA_KERNEL");
  }
}

}  // namespace opcheck
