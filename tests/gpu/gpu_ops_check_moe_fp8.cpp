// The grouped FP8 expert path (MoePath::GroupedFp8, fast mode) against two references:
//  - the CPU backend's moe_experts (fp32 activations): bound 7e-2. e4m3 keeps 3 mantissa bits (~2% per
//    element) and the path rounds twice, x and the SwiGLU output: 4.6-4.8% on these random experts from
//    33 tokens on, the per-expert path's level (it agrees with this one to 6e-6 at DeepSeek's widths);
//    a few rows (T = 1, 5) scattered up to 6.0% on the H200, over the 5e-2 first chosen;
//  - an FP8 reference on the CPU: x and each expert's SwiGLU output rounded exactly as the fast mode rounds
//    activations (ue8m0 scale per row per 128 columns, e4m3 nearest even), the GEMMs in fp32 by the CPU
//    backend. What remains is summation order (and the FP8 tensor cores' reduced-precision sums within
//    128 products) moving an occasional SwiGLU output across an e4m3 rounding boundary, one step of 6-12%
//    for that value: 2-4e-3 seen; with few tokens few values, so one flip weighs more: 8.2e-3 with 5
//    tokens, then 1.2e-2 (T = 5) and 2.0e-2 (T = 1) with other random draws: bound 1e-2 from 16 tokens on,
//    4e-2 below (a wrong fragment layout or scale is off by ~100%).
// Shapes: small ones (H 256 / 384: the down GEMM's second warpgroup past N), DeepSeek-V3.2's widths with 8
// experts; routes from the GPU router, and hand-made ones: experts with 0 and 1 tokens, tiles of one
// expert, T no multiple of the 64-row tile, ids of -1 (another rank's expert: skipped). Every case runs both
// tile forms (64 and 128 rows).
#include <cmath>

#include "ops_check_util.h"

namespace opcheck {

namespace {
float ue8m0_scale(float amax) {
  int e;
  const float m = std::frexp(std::max(amax, 1e-4f) / 448.0f, &e);
  return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
}

// Rows of x [M, K] (K % 128 == 0) rounded as the fast mode rounds activations (k_quant.cu, fp8_act.cuh).
Tensor fp8_round_rows(const Tensor& x) {
  const int64_t M = x.dim(0), K = x.row_size();
  Tensor y = Tensor::empty({M, K}, DType::F32);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k0 = 0; k0 < K; k0 += 128) {
      const float* s = x.f32() + m * K + k0;
      float amax = 0.f;
      for (int i = 0; i < 128; ++i) amax = std::max(amax, std::fabs(s[i]));
      const float sc = ue8m0_scale(amax);
      for (int i = 0; i < 128; ++i) y.f32()[m * K + k0 + i] = fp8e4m3_to_f32(f32_to_fp8e4m3(s[i] / sc)) * sc;
    }
  return y;
}

// The FP8 path's numerics on the CPU: per expert (ascending), the rounded rows of its tokens through gate,
// up, SwiGLU, rounding, down; each token's results added in expert order. Ids outside [0, E) skipped.
Tensor moe_fp8_reference(const Tensor& x, const Tensor& ids, const Tensor& w, const std::vector<ExpertWeights>& ex) {
  const int64_t T = x.dim(0), H = x.row_size(), k = ids.dim(1), E = int64_t(ex.size());
  const Tensor xd = fp8_round_rows(x);
  Tensor y = Tensor::zeros({T, H}, DType::F32);
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> pairs;
    for (int64_t p = 0; p < T * k; ++p)
      if (ids.i32()[p] == e) pairs.push_back(p);
    if (pairs.empty()) continue;
    Tensor xe = Tensor::empty({int64_t(pairs.size()), H}, DType::F32);
    for (size_t r = 0; r < pairs.size(); ++r)
      std::copy_n(xd.f32() + (pairs[r] / k) * H, H, xe.f32() + int64_t(r) * H);
    const Tensor h = g_cpu->silu_mul(g_cpu->linear(xe, ex[size_t(e)].gate), g_cpu->linear(xe, ex[size_t(e)].up));
    const Tensor o = g_cpu->linear(fp8_round_rows(h), ex[size_t(e)].down);
    for (size_t r = 0; r < pairs.size(); ++r) {
      float* yr = y.f32() + (pairs[r] / k) * H;
      const float wr = w.f32()[pairs[r]];
      for (int64_t c = 0; c < H; ++c) yr[c] = std::fma(wr, o.f32()[int64_t(r) * H + c], yr[c]);
    }
  }
  return y;
}

// One call of the FP8 path on host inputs, checked against both references (and rerun: bitwise the same).
// Ids outside [0, E) reach the CPU backend as expert 0 with weight 0 (it takes no -1).
void check_case(const BothExperts& ex, const Tensor& x, const Tensor& ids, const Tensor& w, const std::string& what) {
  const int64_t E = int64_t(ex.c.size());
  Tensor ids_c = ids, w_c = w;
  bool out_of_range = false;
  for (int64_t i = 0; i < ids.numel(); ++i) out_of_range |= ids.i32()[i] < 0 || ids.i32()[i] >= E;
  if (out_of_range) {
    ids_c = Tensor::empty(ids.shape(), DType::I32), w_c = Tensor::empty(w.shape(), DType::F32);
    for (int64_t i = 0; i < ids.numel(); ++i) {
      const bool in = ids.i32()[i] >= 0 && ids.i32()[i] < E;
      ids_c.i32()[i] = in ? ids.i32()[i] : 0;
      w_c.f32()[i] = in ? w.f32()[i] : 0.f;
    }
  }
  const Tensor ref = g_cpu->moe_experts(x, ids_c, w_c, *ex.sc);
  const Tensor emu = moe_fp8_reference(x, ids, w, ex.c);
  g_gpu->set_gemm_mode(GemmMode::Fast);
  g_gpu->set_moe_path(cuda::MoePath::GroupedFp8);
  const Tensor xg = up(x), ig = up(ids), wg = up(w);
  // Both forms: 64-row tiles (k_moe_fp8.cu) and 128-row tiles (k_moe_fp8_ws.cu); then the two against each
  // other: the same wgmma chains per row and column, folded in the same order, so bitwise equal (seen on an
  // H100 in every case, session 22).
  Tensor y64;
  for (int tile_rows : {64, 128}) {
    g_gpu->set_moe_fp8_tile_rows(tile_rows);
    const std::string form = fmt::format(" ({}-row tiles)", tile_rows);
    const Tensor y = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
    const bool taken =
        std::string(g_gpu->last_moe_path()) == "grouped-fp8" && g_gpu->last_moe_fp8_tile_rows() == tile_rows;
    record("moe_experts grouped-fp8 vs cpu" + form, what, taken ? cmp(y, ref).rel : INFINITY, 7e-2);
    record("moe_experts grouped-fp8 vs fp8 reference" + form, what, taken ? cmp(y, emu).rel : INFINITY,
           x.dim(0) >= 16 ? 1e-2 : 4e-2);
    const Tensor y2 = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
    record("moe_experts grouped-fp8 rerun" + form, what, compare(down(y2), down(y)).maxrel, 0.0);
    if (tile_rows == 64) y64 = down(y);
    else record("moe_experts grouped-fp8 128-row vs 64-row tiles", what, compare(down(y), y64).maxrel, 0.0);
  }
  g_gpu->set_moe_fp8_tile_rows(0);
  g_gpu->set_moe_path(cuda::MoePath::Auto);
}

std::string shape_name(const BothExperts& ex, int64_t k, int64_t T) {
  return fmt::format("E={} H={} I={} top-{} T={}", ex.c.size(), ex.c[0].gate.in_features, ex.c[0].gate.out_features,
                     k, T);
}
}  // namespace

void check_moe_fp8() {
  // Routed by the GPU router on random logits.
  struct Shape {
    int64_t E, H, I;
  };
  for (const Shape& sh : {Shape{16, 256, 128}, Shape{32, 384, 256}}) {
    BothExperts ex(sh.E, sh.H, sh.I, DType::F8_E4M3);
    for (int k : {4, 8}) {
      const MoeRouting cfg = sh.E == 16 ? MoeRouting{4, 2, k, true, 2.5f} : MoeRouting{8, 4, k, true, 2.5f};
      for (int64_t T : {1, 5, 33, 130, 700}) {
        Tensor x = randn({T, sh.H}), logits = randn({T, sh.E}, 2.f), bias = randn({sh.E}, 0.1f), ig, wg;
        g_gpu->moe_route(up(logits), up(bias), cfg, &ig, &wg);
        check_case(ex, x, g_gpu->to_host(ig), g_gpu->to_host(wg), shape_name(ex, k, T));
      }
    }
  }
  {  // Hand-made routes over 16 experts, top-4.
    BothExperts ex(16, 256, 128, DType::F8_E4M3);
    const int64_t k = 4;
    auto run = [&](int64_t T, auto&& id_of, const std::string& what) {
      Tensor ids = Tensor::empty({T, k}, DType::I32), w = randn({T, k}, 0.3f, 0.5f), x = randn({T, 256});
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < k; ++j) ids.i32()[t * k + j] = id_of(t, j);
      check_case(ex, x, ids, w, what + fmt::format(", T={}", T));
    };
    // Every token on experts 15, 13, 11, 9 (descending: slot order differs from pick order): 3 tiles each
    // (64 + 64 + 2 rows), 12 experts without tokens.
    run(130, [](int64_t, int64_t j) { return int32_t(15 - 2 * j); }, "all tokens on the same 4 experts");
    // Experts 0-3 get one token each (token 0), 4-7 the other 69 (2 tiles, the second of 5 rows), 8-15 none.
    run(70, [](int64_t t, int64_t j) { return int32_t(t == 0 ? j : 4 + j); }, "experts with 1 token and with 0");
    // A fifth of the pairs on another rank's experts (-1), skipped; T no multiple of the tile.
    run(101, [](int64_t t, int64_t j) { return (t * 4 + j) % 5 == 2 ? -1 : int32_t((t * 7 + j * 3) % 16); },
        "ids of -1 skipped");
  }
  {  // DeepSeek-V3.2's widths (H 7168, I 2048) with 8 experts, top-4; also against the per-expert path.
    BothExperts ex(8, 7168, 2048, DType::F8_E4M3);
    const int64_t T = 200, k = 4;
    Tensor x = randn({T, 7168}), logits = randn({T, 8}, 2.f), bias = randn({8}, 0.1f), ig, wg;
    g_gpu->moe_route(up(logits), up(bias), MoeRouting{4, 2, int(k), true, 2.5f}, &ig, &wg);
    const Tensor ids = g_gpu->to_host(ig), w = g_gpu->to_host(wg);
    check_case(ex, x, ids, w, shape_name(ex, k, T));
    g_gpu->set_gemm_mode(GemmMode::Fast);
    g_gpu->set_moe_path(cuda::MoePath::GroupedFp8);
    const Tensor xg = up(x), yf = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
    g_gpu->set_moe_path(cuda::MoePath::PerExpert);
    const Tensor yp = g_gpu->moe_experts(xg, ig, wg, *ex.sg);
    // Per-expert rounds x the same way (cuBLASLt for experts of > 8 tokens: all of them here); its
    // gate/up come out of cuBLASLt in the probed output type (bf16 there moves many more SwiGLU outputs
    // across rounding boundaries), so the bound is the FP8 one.
    record("moe_experts grouped-fp8 vs per-expert (fast)", shape_name(ex, k, T), compare(down(yf), down(yp)).rel,
           7e-2);
    g_gpu->set_moe_path(cuda::MoePath::Auto);
  }
  {  // Auto: the FP8 path above the grouped limit in the fast mode; the exact mode keeps the fp32 path.
    BothExperts ex(16, 256, 128, DType::F8_E4M3);
    g_gpu->set_gemm_mode(GemmMode::Fast);
    const int64_t T = g_gpu->moe_grouped_max_tokens() + 1, k = 4;
    Tensor x = randn({T, 256}), logits = randn({T, 16}, 2.f), bias = randn({16}, 0.1f), ids, wts;
    g_cpu->moe_route(logits, bias, {4, 2, int(k), true, 2.5f}, &ids, &wts);
    const Tensor ref = g_cpu->moe_experts(x, ids, wts, *ex.sc);
    g_gpu->set_moe_path(cuda::MoePath::Auto);
    Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), *ex.sg);
    record("moe_experts auto, fast mode", fmt::format("T={}, H 256, I 128: grouped-fp8", T),
           std::string(g_gpu->last_moe_path()) == "grouped-fp8" ? cmp(y, ref).rel : INFINITY, 7e-2);
    g_gpu->set_gemm_mode(GemmMode::Exact);
    g_gpu->set_moe_path(cuda::MoePath::GroupedFp8);
    y = g_gpu->moe_experts(up(x), up(ids), up(wts), *ex.sg);
    record("moe_experts GroupedFp8 asked, exact mode", fmt::format("T={}: the fp32 grouped path", T),
           std::string(g_gpu->last_moe_path()) == "grouped" ? cmp(y, ref).rel : INFINITY, kTolF32);
    g_gpu->set_moe_path(cuda::MoePath::Auto);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

}  // namespace opcheck
