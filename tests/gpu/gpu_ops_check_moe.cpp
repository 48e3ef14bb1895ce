// The CUDA backend's MoE ops against the CPU backend (gpu_ops_check's conventions, gpu_ops_check.cpp):
// routing, the per-expert and grouped expert paths (exact and f16 forms), and moe_ffn with the shared
// expert fused into the grouped launches. The FP8 expert path is in gpu_ops_check_moe_fp8.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <tuple>

#include "ops_check_util.h"

namespace opcheck {

void check_moe() {
  struct R {
    int64_t E;
    MoeRouting cfg;
  };
  for (const R& rc : {R{256, {8, 4, 8, true, 2.5f}}, R{8, {4, 2, 3, true, 2.5f}}, R{64, {1, 1, 6, false, 1.0f}}}) {
    const int64_t T = 500;
    Tensor logits = randn({T, rc.E}, 2.f), bias = randn({rc.E}, 0.1f);
    Tensor ic, wc, ig, wg;
    g_cpu->moe_route(logits, bias, rc.cfg, &ic, &wc);
    g_gpu->moe_route(up(logits), up(bias), rc.cfg, &ig, &wg);
    Tensor ih = g_gpu->to_host(ig);
    int64_t diff = 0;
    for (int64_t t = 0; t < T; ++t)
      diff += !std::equal(ic.i32() + t * rc.cfg.top_k, ic.i32() + (t + 1) * rc.cfg.top_k, ih.data<int32_t>() + t * rc.cfg.top_k);
    record("moe_route ids", fmt::format("E={} groups {}/{} top {}: {} of {} tokens differ", rc.E, rc.cfg.topk_group,
                                        rc.cfg.n_group, rc.cfg.top_k, diff, T),
           double(diff) / T, 0.004);
    if (diff == 0) record("moe_route weights", fmt::format("E={}", rc.E), cmp(wg, wc).rel, 1e-6);
  }
  // Experts: FP8 SwiGLU experts over routed tokens.
  const int64_t E = 16, H = 256, I = 128;
  std::vector<std::unique_ptr<BothLinear>> ws;
  std::vector<ExpertWeights> ec, eg;
  for (int64_t e = 0; e < E; ++e) {
    ExpertWeights c, g;
    ws.push_back(std::make_unique<BothLinear>(I, H, DType::F8_E4M3));
    c.gate = ws.back()->c, g.gate = ws.back()->g;
    ws.push_back(std::make_unique<BothLinear>(I, H, DType::F8_E4M3));
    c.up = ws.back()->c, g.up = ws.back()->g;
    ws.push_back(std::make_unique<BothLinear>(H, I, DType::F8_E4M3));
    c.down = ws.back()->c, g.down = ws.back()->g;
    ec.push_back(c), eg.push_back(g);
  }
  const auto set_c = g_cpu->prepare_experts(ec), set_g = g_gpu->prepare_experts(eg);
  for (int64_t T : {1, 6, 120}) {
    Tensor x = randn({T, H}), logits = randn({T, E}), bias = randn({E}, 0.1f);
    Tensor ids, wts;
    g_cpu->moe_route(logits, bias, {4, 2, 4, true, 2.5f}, &ids, &wts);
    Tensor ref = g_cpu->moe_experts(x, ids, wts, *set_c);
    g_gpu->set_moe_path(cuda::MoePath::PerExpert);
    for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
      g_gpu->set_gemm_mode(mode);
      Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), *set_g);
      record("moe_experts per-expert", fmt::format("T={} 16 FP8 experts top-4 {}", T, mode == GemmMode::Fast ? "fast" : "exact"),
             cmp(y, ref).rel, mode == GemmMode::Fast ? 5e-2 : kTolF32);
    }
    g_gpu->set_moe_path(cuda::MoePath::Auto);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

// The grouped path (device-side lists, grouped GEMMs, combine) against the CPU backend: ids from the
// GPU router on random logits (downloaded for the CPU), one batch where every token picks the same
// experts (tiles of one expert), one with ids outside [0, E) (they contribute nothing). Widths include
// the tiny golden models' (H 128, I 48) and ones that are no multiple of 128 (partial scale blocks).
void check_moe_grouped() {
  struct Shape {
    int64_t E, H, I;
    DType dt;
  };
  const std::vector<Shape> shapes = {{16, 128, 48, DType::F8_E4M3},  {16, 640, 176, DType::F8_E4M3},
                                     {16, 2048, 512, DType::F8_E4M3}, {16, 128, 48, DType::BF16},
                                     {16, 640, 176, DType::BF16},     {256, 640, 176, DType::F8_E4M3}};
  g_gpu->set_gemm_mode(GemmMode::Fast);
  const bool f16_default = g_gpu->options().moe_f16_x;
  g_gpu->set_moe_f16_x(false);  // the exact form first; the fast mode's f16 form below
  for (const Shape& sh : shapes) {
    BothExperts ex(sh.E, sh.H, sh.I, sh.dt);
    for (int64_t k : {4, 8}) {
      const MoeRouting cfg = sh.E == 16 ? MoeRouting{4, 2, int(k), true, 2.5f} : MoeRouting{8, 4, int(k), true, 2.5f};
      for (int64_t T : {1, 3, 8, 33, 128}) {
        Tensor x = randn({T, sh.H}), logits = randn({T, sh.E}, 2.f), bias = randn({sh.E}, 0.1f);
        Tensor ig, wg;
        g_gpu->moe_route(up(logits), up(bias), cfg, &ig, &wg);
        Tensor ids = g_gpu->to_host(ig), wts = g_gpu->to_host(wg);
        Tensor ref = g_cpu->moe_experts(x, ids, wts, *ex.sc);
        g_gpu->set_moe_path(cuda::MoePath::Grouped);  // Auto: grouped-fp8 from 32 tokens in the fast mode
        Tensor xg = up(x);
        Tensor y = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
        const std::string path = g_gpu->last_moe_path();
        const std::string what = fmt::format("{} E={} H={} I={} top-{} T={}", dname(sh.dt), sh.E, sh.H, sh.I, k, T);
        record("moe_experts grouped", what, path == "grouped" ? cmp(y, ref).rel : INFINITY, kTolF32);
        Tensor y2 = g_gpu->moe_experts(xg, ig, wg, *ex.sg);  // deterministic: bitwise the same
        record("moe_experts grouped rerun", what, compare(down(y2), down(y)).maxrel, 0.0);
        if (sh.dt == DType::F8_E4M3) {
          // f16 x (11 bits, the precision of the GEMV's TF32 form): ~2^-12 per product; bound 2e-3 (a wrong
          // operand layout or scale is off by ~100%).
          g_gpu->set_moe_f16_x(true);
          Tensor yf = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
          record("moe_experts grouped f16 x", what,
                 std::string(g_gpu->last_moe_path()) == "grouped-f16" ? cmp(yf, ref).rel : INFINITY, 2e-3);
          g_gpu->set_moe_f16_x(false);
        }
      }
    }
  }
  BothExperts ex(256, 640, 176, DType::F8_E4M3);
  BothExperts small(16, 128, 48, DType::F8_E4M3);
  for (auto [E, k, T] : std::vector<std::array<int64_t, 3>>{{256, 8, 128}, {16, 4, 128}, {256, 8, 33}}) {
    BothExperts& e = E == 256 ? ex : small;
    const int64_t H = e.c[0].gate.in_features;
    // Every token: experts E-1, E-3, ... (descending, so that slot order differs from pick order).
    Tensor ids = Tensor::empty({T, k}, DType::I32), wts = randn({T, k}, 0.3f, 0.5f);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) ids.i32()[t * k + j] = int32_t(E - 1 - 2 * j);
    Tensor x = randn({T, H});
    Tensor ref = g_cpu->moe_experts(x, ids, wts, *e.sc);
    Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), *e.sg);
    record("moe_experts grouped", fmt::format("all tokens on the same {} of {} experts, T={}", k, E, T),
           std::string(g_gpu->last_moe_path()) == "grouped" ? cmp(y, ref).rel : INFINITY, kTolF32);
  }
  {  // ids outside [0, E): no contribution (the CPU reference gets expert 0 with weight 0 there)
    const int64_t T = 33, k = 4, H = 128;
    Tensor x = randn({T, H}), logits = randn({T, 16}, 2.f), bias = randn({16}, 0.1f), ids, wts;
    g_cpu->moe_route(logits, bias, {4, 2, int(k), true, 2.5f}, &ids, &wts);
    Tensor bad = Tensor::empty({T, k}, DType::I32), wref = Tensor::empty({T, k}, DType::F32);
    for (int64_t i = 0; i < T * k; ++i) {
      const bool out = i % 5 == 2;
      bad.i32()[i] = out ? (i % 2 ? -1 : 16 + int32_t(i)) : ids.i32()[i];
      ids.i32()[i] = out ? 0 : ids.i32()[i];
      wref.f32()[i] = out ? 0.f : wts.f32()[i];
    }
    Tensor ref = g_cpu->moe_experts(x, ids, wref, *small.sc);
    Tensor y = g_gpu->moe_experts(up(x), up(bad), up(wts), *small.sg);
    record("moe_experts grouped", "ids outside [0, E) ignored, T=33", cmp(y, ref).rel, kTolF32);
  }
  g_gpu->set_moe_path(cuda::MoePath::Auto);
  // Auto in the fast mode leaves larger batches of experts the FP8 path does not take (I = 48) to the
  // grouped fp32 path (a recorded step can capture it; the per-expert path reads the routing back).
  {
    const int64_t T = g_gpu->moe_grouped_max_tokens() + 1, k = 4, H = 128;
    Tensor x = randn({T, H}), logits = randn({T, 16}, 2.f), bias = randn({16}, 0.1f), ids, wts;
    g_cpu->moe_route(logits, bias, {4, 2, int(k), true, 2.5f}, &ids, &wts);
    Tensor ref = g_cpu->moe_experts(x, ids, wts, *small.sc);
    g_gpu->set_moe_path(cuda::MoePath::Auto);
    Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), *small.sg);
    const bool grouped = std::string(g_gpu->last_moe_path()) == "grouped";
    record("moe_experts auto, fast mode", fmt::format("T={}: grouped path", T), grouped ? cmp(y, ref).rel : INFINITY,
           kTolF32);
    g_gpu->set_gemm_mode(GemmMode::Exact);  // exact: grouped at any size, in chunks of tokens
    y = g_gpu->moe_experts(up(x), up(ids), up(wts), *small.sg);
    record("moe_experts auto, exact mode", fmt::format("T={}: grouped in chunks", T),
           std::string(g_gpu->last_moe_path()) == "grouped" ? cmp(y, ref).rel : INFINITY, kTolF32);
  }
  {  // The f16 form's per-token scale: tokens of very different magnitudes (x 4e4, x 1e-5 of the first),
     // each token's own error (a scale shared across tokens, or f16 overflow above 65,504, shows).
    const int64_t T = 3, k = 8, H = 640;
    Tensor x = randn({T, H}), logits = randn({T, 256}, 2.f), bias = randn({256}, 0.1f), ids, wts;
    for (int64_t j = 0; j < H; ++j) x.f32()[H + j] *= 4e4f, x.f32()[2 * H + j] *= 1e-5f;
    g_cpu->moe_route(logits, bias, {8, 4, int(k), true, 2.5f}, &ids, &wts);
    Tensor ref = g_cpu->moe_experts(x, ids, wts, *ex.sc);
    g_gpu->set_gemm_mode(GemmMode::Fast);
    g_gpu->set_moe_f16_x(true);
    Tensor y = down(g_gpu->moe_experts(up(x), up(ids), up(wts), *ex.sg));
    const bool f16 = std::string(g_gpu->last_moe_path()) == "grouped-f16";
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
      double num = 0, den = 0;
      for (int64_t j = 0; j < H; ++j) {
        const double a = y.f32()[t * H + j], e = ref.f32()[t * H + j];
        num = std::max(num, std::isfinite(a) ? std::fabs(a - e) : INFINITY), den = std::max(den, std::fabs(e));
      }
      worst = std::max(worst, den > 0 ? num / den : num);
    }
    record("moe_experts grouped f16 x", "tokens x1 / x4e4 / x1e-5, each token's error", f16 ? worst : INFINITY, 2e-3);
    g_gpu->set_moe_f16_x(false);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
  g_gpu->set_moe_f16_x(f16_default);
  check_moe_ffn_shared();
}

// moe_ffn with the shared expert run as one more expert of the grouped launches, against the CPU
// backend's composition (moe_experts, then the shared SwiGLU through linear, added last): exact and f16
// forms, ids of other ranks (-1) mixed in, a rerun bitwise equal; and a shared expert of another width,
// which must take the composition (path without "+ shared").
void check_moe_ffn_shared() {
  struct Shape {
    int64_t E, H, I;
    DType dt;
  };
  const bool f16_default = g_gpu->options().moe_f16_x;
  for (const Shape& sh : std::vector<Shape>{{16, 128, 48, DType::F8_E4M3}, {256, 640, 176, DType::F8_E4M3},
                                            {16, 640, 176, DType::BF16}}) {
    BothExperts ex(sh.E, sh.H, sh.I, sh.dt), shared(1, sh.H, sh.I, sh.dt), wide(1, sh.H, 2 * sh.I, sh.dt);
    const MoeRouting cfg = sh.E == 16 ? MoeRouting{4, 2, 4, true, 2.5f} : MoeRouting{8, 4, 8, true, 2.5f};
    for (int64_t T : {1, 3, 8, 33}) {
      Tensor x = randn({T, sh.H}), logits = randn({T, sh.E}, 2.f), bias = randn({sh.E}, 0.1f), ig, wg;
      g_gpu->moe_route(up(logits), up(bias), cfg, &ig, &wg);
      Tensor ids = g_gpu->to_host(ig), wts = g_gpu->to_host(wg);
      if (T == 8)  // another rank's experts: -1, skipped
        for (int64_t i = 0; i < ids.numel(); i += 3) ids.i32()[i] = -1;
      // The CPU reference takes -1 as expert 0 with weight 0 (as the grouped checks above).
      Tensor idc = Tensor::empty(ids.shape(), DType::I32), wc = Tensor::empty(wts.shape(), DType::F32);
      for (int64_t i = 0; i < ids.numel(); ++i) {
        idc.i32()[i] = std::max(ids.i32()[i], 0);
        wc.f32()[i] = ids.i32()[i] < 0 ? 0.f : wts.f32()[i];
      }
      Tensor ref = g_cpu->moe_ffn(x, idc, wc, *ex.sc, &shared.c[0]);
      Tensor xg = up(x), idg = up(ids);
      g_gpu->set_moe_path(cuda::MoePath::Grouped);
      const std::string what = fmt::format("{} E={} H={} I={} top-{} T={}{}", dname(sh.dt), sh.E, sh.H, sh.I, cfg.top_k,
                                           T, T == 8 ? ", a third of the ids -1" : "");
      g_gpu->set_gemm_mode(GemmMode::Exact);
      Tensor y = g_gpu->moe_ffn(xg, idg, wg, *ex.sg, &shared.g[0]);
      record("moe_ffn shared fused", what,
             std::string(g_gpu->last_moe_path()) == "grouped + shared" ? cmp(y, ref).rel : INFINITY, kTolF32);
      Tensor y2 = g_gpu->moe_ffn(xg, idg, wg, *ex.sg, &shared.g[0]);
      record("moe_ffn shared fused rerun", what, compare(down(y2), down(y)).maxrel, 0.0);
      if (sh.dt == DType::F8_E4M3) {
        g_gpu->set_gemm_mode(GemmMode::Fast);
        g_gpu->set_moe_f16_x(true);
        Tensor yf = g_gpu->moe_ffn(xg, idg, wg, *ex.sg, &shared.g[0]);
        record("moe_ffn shared fused f16 x", what,
               std::string(g_gpu->last_moe_path()) == "grouped-f16 + shared" ? cmp(yf, ref).rel : INFINITY, 2e-3);
        g_gpu->set_moe_f16_x(f16_default);
        g_gpu->set_gemm_mode(GemmMode::Exact);
      }
      if (T == 3) {  // a shared expert twice as wide: not one of the table's experts, the composition
        Tensor rw = g_cpu->moe_ffn(x, idc, wc, *ex.sc, &wide.c[0]);
        Tensor yw = g_gpu->moe_ffn(xg, idg, wg, *ex.sg, &wide.g[0]);
        record("moe_ffn shared of another width", what,
               std::string(g_gpu->last_moe_path()) == "grouped" ? cmp(yw, rw).rel : INFINITY, kTolF32);
      }
    }
  }
  g_gpu->set_moe_path(cuda::MoePath::Auto);
  g_gpu->set_gemm_mode(GemmMode::Exact);
  g_gpu->set_moe_f16_x(f16_default);
}
}  // namespace opcheck
