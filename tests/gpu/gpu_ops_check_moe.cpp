// The CUDA backend's MoE ops against the CPU backend (gpu_ops_check's conventions, gpu_ops_check.cpp):
// routing (also bit for bit, and the router's two kernel forms against each other), the per-expert and
// grouped expert paths (exact and f16 forms), the combine bit for bit, and moe_ffn with the shared expert
// fused into the grouped launches. The FP8 expert path is in gpu_ops_check_moe_fp8.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <tuple>

#include "ops_check_util.h"

namespace opcheck {

namespace {
// Whether both backends compute logit x's score 1 / (1 + expf(-x)) as the same float: 1 + v rounds to one
// float for every v within 3 ulp of exp(-x) (CUDA's expf is within 2 ulp, glibc's within 1), or expf
// overflows (score 0). Only such logits let ids AND weights be compared bitwise with the CPU backend;
// elsewhere the two expf may differ by an ulp (the tolerances of check_moe's first rows).
bool sigmoid_exact(float x) {
  const double t = std::exp(-double(x));
  if (t > 1e60) return true;
  const float f = float(t);
  float v = f;
  for (int i = 0; i < 3; ++i) v = std::nextafter(v, 0.f);
  for (int i = 0; i < 7; ++i, v = std::nextafter(v, INFINITY))
    if (1.0f + v != 1.0f + f) return false;
  return true;
}

// Routing inputs made to tie: scores from a few levels (whole groups then tie on their best two), biases
// from a few levels (ties across levels), one logit for all. The kinds whose logits are all sigmoid_exact
// can be compared bitwise with the CPU; the others only between the GPU's two forms.
struct RouteKind {
  const char* name;
  int logits;  // 0: 10 levels, 1: -200 / 2.25 / 200 (scores 0, ~0.9, 1), 2: all 3.0, 3: randn x 2, 4: randn rounded to 0.5
  int bias;    // 0: zero, 1: multiples of 1/256 in [-4/256, 4/256], 2: randn x 0.01
  bool exact;  // all logits sigmoid_exact
};
const std::vector<RouteKind>& route_kinds() {
  static const std::vector<RouteKind> k = {
      {"10 levels", 0, 0, true},          {"10 levels + bias levels", 0, 1, true},
      {"10 levels + randn bias", 0, 2, true}, {"saturated + bias levels", 1, 1, true},
      {"all equal", 2, 0, true},          {"all equal + bias levels", 2, 1, true},
      {"randn", 3, 2, false},             {"randn to 0.5 + bias levels", 4, 1, false}};
  return k;
}
std::vector<float> route_levels(int kind) {
  if (kind == 1) return {-200.f, 2.25f, 200.f};
  if (kind == 2) return {3.0f};
  std::vector<float> l;
  for (int i = 0; i < 10; ++i) l.push_back(2.25f + 0.375f * float(i));
  return l;
}
std::pair<Tensor, Tensor> route_inputs(const RouteKind& k, int64_t T, int64_t E) {
  Tensor logits = randn({T, E}, 2.f), bias = randn({E}, 0.01f);
  if (k.logits <= 2) {
    const std::vector<float> lv = route_levels(k.logits);
    std::uniform_int_distribution<int> pick(0, int(lv.size()) - 1);
    for (int64_t i = 0; i < T * E; ++i) logits.f32()[i] = lv[size_t(pick(rng()))];
  } else if (k.logits == 4) {
    for (int64_t i = 0; i < T * E; ++i) logits.f32()[i] = std::round(logits.f32()[i] * 2.f) / 2.f;
  }
  std::uniform_int_distribution<int> step(-4, 4);
  for (int64_t e = 0; e < E; ++e)
    if (k.bias == 0) bias.f32()[e] = 0.f;
    else if (k.bias == 1) bias.f32()[e] = float(step(rng())) / 256.f;
  return {logits, bias};
}

// Tokens whose ids or weights differ in any bit (host tensors [T, k]).
int64_t route_diff(const Tensor& ia, const Tensor& wa, const Tensor& ib, const Tensor& wb, int64_t T, int64_t k,
                   int64_t* first) {
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t)
    if (std::memcmp(ia.data<int32_t>() + t * k, ib.data<int32_t>() + t * k, size_t(k) * 4) != 0 ||
        std::memcmp(wa.f32() + t * k, wb.f32() + t * k, size_t(k) * 4) != 0) {
      if (n++ == 0) *first = t;
    }
  return n;
}
}  // namespace

// Routing, bitwise: (1) the backend's moe_route (block form up to 512 tokens, warp form above) against the CPU
// backend on logits whose scores both compute alike (ids and weights bit for bit); (2) the block form against
// the warp form (launch_moe_route with each) on those and on randn logits. Batches 1 (decode) to 600,
// DeepSeek-V3's 256 experts in 8 groups, groups that are not one warp (24, 2, 64 experts), top_k up to 32;
// inputs full of ties (ties go to the lower index, in groups and in experts).
void check_moe_route_bitwise() {
  int bad_levels = 0;
  for (int kind = 0; kind <= 2; ++kind)
    for (float x : route_levels(kind)) bad_levels += !sigmoid_exact(x);
  record("moe_route exact score levels", "logit levels whose score both backends round alike", bad_levels, 0);
  struct R {
    int64_t E;
    MoeRouting cfg;
    bool block;  // the block form takes it (E <= 1024, <= 64 experts per group)
  };
  const std::vector<R> cfgs = {{256, {8, 4, 8, true, 2.5f}, true},   {512, {16, 8, 16, true, 1.5f}, true},
                               {96, {4, 2, 8, true, 2.5f}, true},    {64, {1, 1, 6, false, 1.0f}, true},
                               {64, {2, 2, 32, true, 1.0f}, true},   {16, {4, 2, 4, true, 2.5f}, true},
                               {16, {1, 1, 2, true, 1.0f}, true},    {8, {4, 2, 3, true, 2.5f}, true},
                               {256, {1, 1, 8, true, 2.5f}, false}};
  const std::vector<int64_t> Ts = {1, 3, 8, 64, 300, 600};
  for (const R& rc : cfgs) {
    const int k = rc.cfg.top_k;
    const std::string cfg = fmt::format("E={} {} groups keep {} top-{}", rc.E, rc.cfg.n_group, rc.cfg.topk_group, k);
    int wrong_form = 0;  // a launch error, or not the form asked for (the warp form where the block one can't)
    for (const RouteKind& kind : route_kinds()) {
      int64_t tokens = 0, vs_cpu = 0, vs_warp = 0, first_cpu = -1, first_warp = -1, T_cpu = 0, T_warp = 0;
      for (int64_t T : Ts) {
        auto [logits, bias] = route_inputs(kind, T, rc.E);
        Tensor lg = up(logits), bg = up(bias);
        tokens += T;
        if (kind.exact) {
          Tensor ic, wc, ig, wg;
          g_cpu->moe_route(logits, bias, rc.cfg, &ic, &wc);
          g_gpu->moe_route(lg, bg, rc.cfg, &ig, &wg);
          int64_t f = -1;
          const int64_t d = route_diff(g_gpu->to_host(ig), g_gpu->to_host(wg), ic, wc, T, k, &f);
          if (d && !vs_cpu) first_cpu = f, T_cpu = T;
          vs_cpu += d;
        }
        Tensor out[2][2];  // [warp, block] x [ids, weights]
        for (int f = 0; f < 2; ++f) {
          out[f][0] = g_gpu->empty({T, k}, DType::I32);
          out[f][1] = g_gpu->empty({T, k}, DType::F32);
          const cuda::MoeRouteForm want = f ? cuda::MoeRouteForm::Block : cuda::MoeRouteForm::Warp;
          const cuda::MoeRouteForm got = cuda::launch_moe_route(
              lg.data<float>(), bg.data<float>(), int(T), int(rc.E), rc.cfg.n_group, rc.cfg.topk_group, k,
              rc.cfg.norm_topk_prob, rc.cfg.routed_scaling_factor, out[f][0].data<int32_t>(), out[f][1].data<float>(),
              g_gpu->stream(), want);
          wrong_form += cudaGetLastError() != cudaSuccess || got != (f && !rc.block ? cuda::MoeRouteForm::Warp : want);
          out[f][0] = g_gpu->to_host(out[f][0]), out[f][1] = g_gpu->to_host(out[f][1]);
        }
        int64_t f = -1;
        const int64_t d = route_diff(out[1][0], out[1][1], out[0][0], out[0][1], T, k, &f);
        if (d && !vs_warp) first_warp = f, T_warp = T;
        vs_warp += d;
      }
      if (kind.exact)
        record("moe_route bitwise vs cpu",
               fmt::format("{}, {}: {} of {} tokens differ{}", cfg, kind.name, vs_cpu, tokens,
                           vs_cpu ? fmt::format(" (first T={} t={})", T_cpu, first_cpu) : ""),
               double(vs_cpu), 0.0);
      if (rc.block)
        record("moe_route block = warp",
               fmt::format("{}, {}: {} of {} tokens differ{}", cfg, kind.name, vs_warp, tokens,
                           vs_warp ? fmt::format(" (first T={} t={})", T_warp, first_warp) : ""),
               double(vs_warp), 0.0);
    }
    record("moe_route forms", fmt::format("{}: {}", cfg, rc.block ? "block and warp" : "the warp form's alone"),
           double(wrong_form), 0.0);
  }
  // Decode batches take the block form.
  int not_block = 0;
  for (int T : {1, 8, 64}) {
    Tensor lg = up(randn({T, 256})), bg = up(randn({256}, 0.1f));
    Tensor ig = g_gpu->empty({T, 8}, DType::I32), wg = g_gpu->empty({T, 8}, DType::F32);
    not_block += cuda::launch_moe_route(lg.data<float>(), bg.data<float>(), T, 256, 8, 4, 8, true, 2.5f,
                                        ig.data<int32_t>(), wg.data<float>(), g_gpu->stream()) !=
                 cuda::MoeRouteForm::Block;
    g_gpu->synchronize();
  }
  record("moe_route auto form", "E=256 8 groups, T=1, 8, 64: the block form", double(not_block), 0.0);
}

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
  check_moe_route_bitwise();
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

// The combine (launch_moe_combine) bit for bit against its definition on the host: per token, std::fma over
// its pairs in ascending slot order from 0, then + the shared expert's row. Decode batches at DeepSeek-V3's
// H = 7168 (the small-T grids: 1-2 columns per thread, 64-256 threads), large T (4 columns per thread), pairs
// of other ranks (-1), top-32 (several load chunks), H no multiple of the block.
void check_moe_combine() {
  struct C {
    int64_t T, H, k;
    bool shared;
  };
  for (const C& c : std::vector<C>{{1, 7168, 8, true},  {2, 7168, 8, true},  {1, 7168, 8, false}, {3, 7168, 8, true},
                                   {20, 7168, 8, true}, {64, 7168, 8, true}, {300, 640, 8, true}, {5, 33, 4, false},
                                   {2, 640, 32, true},  {1, 7168, 32, false}}) {
    const int64_t T = c.T, H = c.H, k = c.k, P = T * k;
    Tensor out = randn({P + T, H}), w = randn({T, k}, 0.3f, 0.5f);
    Tensor ps = Tensor::empty({P + T}, DType::I32);  // routed pairs' slots (a shuffle: distinct), then shared
    std::vector<int32_t> perm(static_cast<size_t>(P));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng());
    for (int64_t i = 0; i < P; ++i) ps.i32()[i] = i % 5 == 3 ? -1 : perm[size_t(i)];
    for (int64_t t = 0; t < T; ++t) ps.i32()[P + t] = int32_t(P + t);
    Tensor ref = Tensor::empty({T, H}, DType::F32);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<std::pair<int32_t, float>> pairs;
      for (int64_t j = 0; j < k; ++j)
        if (ps.i32()[t * k + j] >= 0) pairs.push_back({ps.i32()[t * k + j], w.f32()[t * k + j]});
      std::sort(pairs.begin(), pairs.end());
      for (int64_t col = 0; col < H; ++col) {
        float acc = 0.f;
        for (auto [slot, wt] : pairs) acc = std::fma(wt, out.f32()[slot * H + col], acc);
        if (c.shared) acc += out.f32()[(P + t) * H + col];
        ref.f32()[t * H + col] = acc;
      }
    }
    Tensor og = up(out), pg = up(ps), wg = up(w), y = g_gpu->empty({T, H}, DType::F32);
    cuda::launch_moe_combine(og.data<float>(), int(H), pg.data<int32_t>(), wg.data<float>(), int(T), int(k),
                             y.data<float>(), g_gpu->num_sms(), g_gpu->stream(),
                             c.shared ? pg.data<int32_t>() + P : nullptr);
    const bool launched = cudaGetLastError() == cudaSuccess;
    Tensor yh = down(y);
    int64_t diff = 0;
    for (int64_t i = 0; i < T * H; ++i) diff += std::memcmp(yh.f32() + i, ref.f32() + i, 4) != 0;
    record("moe_combine bitwise",
           fmt::format("T={} H={} top-{}{}, a fifth of pairs -1: {} of {} differ", T, H, k, c.shared ? " + shared" : "",
                       diff, T * H),
           launched ? double(diff) : INFINITY, 0.0);
  }
}

// The grouped path (device-side lists, grouped GEMMs, combine) against the CPU backend: ids from the
// GPU router on random logits (downloaded for the CPU), one batch where every token picks the same
// experts (tiles of one expert), one with ids outside [0, E) (they contribute nothing). Widths include
// the tiny golden models' (H 128, I 48) and ones that are no multiple of 128 (partial scale blocks).
void check_moe_grouped() {
  check_moe_combine();
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
        // The down GEMM at the other rows per block: each output's sum in the same order, bitwise equal.
        const int rows_default = g_gpu->options().moe_down_rows;
        g_gpu->set_moe_down_rows(rows_default == 32 ? 16 : 32);
        Tensor y3 = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
        record("moe_experts grouped down rows", what, compare(down(y3), down(y)).maxrel, 0.0);
        if (sh.dt == DType::F8_E4M3) {
          g_gpu->set_moe_f16_x(true);
          Tensor yo = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
          g_gpu->set_moe_down_rows(rows_default);
          Tensor yd = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
          record("moe_experts grouped f16 x down rows", what, compare(down(yo), down(yd)).maxrel, 0.0);
          // The weights' streaming loads read the same bytes: bitwise equal.
          const bool stream_default = g_gpu->options().moe_stream_weights;
          g_gpu->set_moe_stream_weights(!stream_default);
          Tensor ys = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
          g_gpu->set_moe_stream_weights(stream_default);
          record("moe_experts grouped f16 x stream loads", what, compare(down(ys), down(yd)).maxrel, 0.0);
          g_gpu->set_moe_f16_x(false);
        }
        g_gpu->set_moe_down_rows(rows_default);
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
                                            {16, 640, 176, DType::BF16}, {16, 7168, 128, DType::F8_E4M3}}) {
    BothExperts ex(sh.E, sh.H, sh.I, sh.dt), shared(1, sh.H, sh.I, sh.dt), wide(1, sh.H, 2 * sh.I, sh.dt);
    const MoeRouting cfg = sh.E == 16 ? MoeRouting{4, 2, 4, true, 2.5f} : MoeRouting{8, 4, 8, true, 2.5f};
    for (int64_t T : {1, 2, 3, 8, 33}) {  // H 7168: the decode combine's grids (T = 1, 2)
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
