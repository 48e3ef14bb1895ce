// gpu_bench's MoE experts table (`gpu_bench moe`, docs/PERF.md): the grouped fp32, per-expert and grouped
// FP8 expert paths at DeepSeek-V3.2's shapes, T = 1..8192 tokens, the FP8 path against a cuBLASLt FP8 dense
// GEMM pair of equal FLOPs, with the paths' outputs checked against each other.
#include "gpu_bench_moe.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_lt.h"
#include "check_util.h"
#include "gpu_bench_util.h"

namespace ds::gpubench {
using namespace ds::backend;

namespace {
// A cuBLASLt FP8 block-scaled dense GEMM pair with the FLOPs of a MoE layer's experts over P = T x top_k
// rows: [P, H] x [2I, H]^T (gate and up as one weight) and [P, I] x [H, I]^T. The ceiling the grouped FP8
// path is held against (no routing, one weight, M a multiple of 16). Returns ms, or 0 if cuBLASLt refused.
double dense_fp8_pair_ms(int P, int H, int I) {
  const int M = (P + 15) / 16 * 16;
  cuda::LtGemm lt;
  const size_t xb = size_t(M) * std::max(H, I), yb = size_t(M) * std::max(2 * I, H) * 2;
  const size_t wb = size_t(2 * I) * H, sb = size_t(M) * (std::max(H, I) / 128 + 4) + size_t(H) * H / 128;
  void *x, *w, *y, *xs, *ws;
  DS_CUDA_CHECK(cudaMalloc(&x, xb));
  DS_CUDA_CHECK(cudaMalloc(&w, wb));
  DS_CUDA_CHECK(cudaMalloc(&y, yb));
  DS_CUDA_CHECK(cudaMalloc(&xs, sb * 4));
  DS_CUDA_CHECK(cudaMalloc(&ws, sb * 4));
  fill_random(x, xb, 0xbf);
  fill_random(w, wb, 0xbf);
  std::vector<float> sc(sb, 1e-3f);
  DS_CUDA_CHECK(cudaMemcpyAsync(xs, sc.data(), sb * 4, cudaMemcpyHostToDevice, be->stream()));
  DS_CUDA_CHECK(cudaMemcpyAsync(ws, sc.data(), sb * 4, cudaMemcpyHostToDevice, be->stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
  bool ok = true;
  auto u8 = [](void* p) { return static_cast<const uint8_t*>(p); };
  auto f32 = [](void* p) { return static_cast<const float*>(p); };
  const double t = time_ms([&](int) {
    ok &= lt.fp8(u8(w), f32(ws), u8(x), f32(xs), y, false, M, 2 * I, H, be->stream());
    ok &= lt.fp8(u8(w), f32(ws), u8(x), f32(xs), y, false, M, H, I, be->stream());
  }, 5, 2);
  cudaFree(x), cudaFree(w), cudaFree(y), cudaFree(xs), cudaFree(ws);
  return ok ? t : 0.0;
}
}  // namespace

// MoE experts at DeepSeek-V3.2's shapes (256 experts, top-8, H 7168, I 2048, FP8 with 128x128 scales) in
// the default fast mode, routing by moe_route on random logits: the grouped fp32 path (device-side lists,
// 4 launches), the per-expert path (routing read back; per used expert gather + 3 linear() + scatter)
// and the grouped FP8 path (device-side lists padded to 64-row tiles, wgmma FP8 GEMMs, 5 launches), also in
// its 128-row form (k_moe_fp8_ws.cu; the last columns, and which form Auto takes).
// Bytes = what must be read at least: the used experts' weights and scales. TFLOP/s counts the routed
// rows' FLOPs (2 x T x top_k x 3 x H x I), against a cuBLASLt FP8 dense GEMM pair of equal FLOPs timed in
// the same run. Checks: grouped vs per-expert in the exact mode up to 128 tokens (fp32 both), FP8 vs
// per-expert (both FP8 activations; per-expert's experts with <= 8 tokens take the fp32 GEMV: up to ~5%).
// Returns false when a check fails (or the grouped FP8 path was not taken).
bool bench_moe(const Ceilings& c, const std::vector<int>& Ts) {
  bool ok_moe = true;  // the correctness checks
  const int E = 256, k = 8, H = 7168, I = 2048, variants = 4;
  const int bh = (H + 127) / 128, bi = (I + 127) / 128;
  std::vector<std::vector<uint8_t>> wq;
  std::vector<std::vector<float>> sc;
  for (int v = 0; v < variants * 3; ++v) {
    std::vector<uint8_t> q(size_t(H) * I);
    for (auto& b : q) {
      b = uint8_t(xorshift() >> 24);
      if ((b & 0x7f) == 0x7f) b ^= 1;  // e4m3 NaN
    }
    std::vector<float> s(size_t(bh) * bi);
    for (auto& x : s) x = 1e-3f * (1.0f + float(xorshift() % 1000) / 1000.f);
    wq.push_back(std::move(q));
    sc.push_back(std::move(s));
  }
  std::vector<ExpertWeights> ex(E);
  for (int e = 0; e < E; ++e) {
    LinearWeight* ws[3] = {&ex[size_t(e)].gate, &ex[size_t(e)].up, &ex[size_t(e)].down};
    for (int m = 0; m < 3; ++m) {
      const int v = (e % variants) * 3 + m;
      const int64_t rows = m < 2 ? I : H, cols = m < 2 ? H : I;
      HostTensor hw{"w", DType::F8_E4M3, {rows, cols}, wq[size_t(v)].data()};
      HostTensor hs{"s", DType::F32, {(rows + 127) / 128, (cols + 127) / 128}, sc[size_t(v)].data()};
      *ws[m] = be->load_linear(hw, &hs);
    }
  }
  const auto set = be->prepare_experts(ex);
  const double expert_bytes = 3.0 * H * I + 3.0 * bh * bi * 4;
  const MoeRouting cfg{8, 4, k, true, 2.5f};
  Tensor bias = rand_f32({E}, 0.01f);  // small: near-uniform load, as a trained (balancing) bias gives
  std::printf("\n| tokens | experts used | grouped fp32 | GB/s (%% HBM) | per-expert | grouped-fp8 | GB/s (%% HBM) | "
              "fp8 TFLOP/s | dense FP8 pair TFLOP/s | fp8 / dense | fp8 vs per-expert | fp8 vs grouped | "
              "grouped vs per-expert exact | fp8 vs per-expert rel diff | fp8 128-row tiles | TFLOP/s | 128 vs 64 | "
              "128 vs per-expert rel diff | auto |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int T : Ts) {
    Tensor x = rand_f32({T, H}), logits = rand_f32({T, E}, 2.0f), ids, wts;
    be->moe_route(logits, bias, cfg, &ids, &wts);
    Tensor hid = be->to_host(ids);
    std::vector<char> used(E, 0);
    for (int64_t i = 0; i < hid.numel(); ++i) used[size_t(hid.data<int32_t>()[i])] = 1;
    const int n_used = int(std::count(used.begin(), used.end(), 1));
    const double bytes = n_used * expert_bytes, flop = 2.0 * T * k * 3.0 * H * I;
    be->set_gemm_mode(cuda::GemmMode::Fast);
    const int reps = T >= 2048 ? 5 : T >= 512 ? 10 : 20;
    auto profile_once = [&] {  // one more call, kernels timed separately (logged)
      be->set_profile(true);
      be->moe_experts(x, ids, wts, *set);
      be->set_profile(false);
    };
    Tensor yg;
    double t_g = 0;
    if (T <= 4096) {  // grouped fp32 is 25x slower than the FP8 paths beyond
      be->set_moe_path(cuda::MoePath::Grouped);
      t_g = time_ms([&](int) { yg = be->moe_experts(x, ids, wts, *set); }, reps);
      if (T <= 1024) profile_once();
    }
    be->set_moe_path(cuda::MoePath::PerExpert);
    Tensor yp;
    const double t_p = time_ms([&](int) { yp = be->moe_experts(x, ids, wts, *set); }, reps);
    double t_f = 0, t_d = 0;
    std::string fp8_diff = "-";
    double t_f128 = 0;
    std::string fp8_diff128 = "-";
    if (T >= 8) {
      be->set_moe_path(cuda::MoePath::GroupedFp8);
      for (int tile_rows : {64, 128}) {
        be->set_moe_fp8_tile_rows(tile_rows);
        Tensor yf;
        const double t = time_ms([&](int) { yf = be->moe_experts(x, ids, wts, *set); }, reps);
        if (std::string(be->last_moe_path()) != "grouped-fp8" || be->last_moe_fp8_tile_rows() != tile_rows) {
          std::printf("grouped-fp8 path (%d-row tiles) not taken at T=%d (%s)\n", tile_rows, T, be->last_moe_path());
          ok_moe = false;
        }
        profile_once();
        const gpucheck::Err e = gpucheck::compare(be->to_host(yf), be->to_host(yp));
        ok_moe &= std::isfinite(e.rel) && e.rel < 7e-2;  // per-expert: fp32 GEMV for experts of <= 8 tokens
        (tile_rows == 64 ? t_f : t_f128) = t;
        (tile_rows == 64 ? fp8_diff : fp8_diff128) = fmt::format("{:.1e}", e.rel);
      }
      be->set_moe_fp8_tile_rows(0);
      if (T >= 256) t_d = dense_fp8_pair_ms(T * k, H, I);
    }
    std::string exact = "-";
    if (T <= 128) {
      be->set_moe_path(cuda::MoePath::PerExpert);
      be->set_gemm_mode(cuda::GemmMode::Exact);
      Tensor ype = be->moe_experts(x, ids, wts, *set);
      const gpucheck::Err e = gpucheck::compare(be->to_host(yg), be->to_host(ype));
      exact = fmt::format("{:.1e}", e.rel);
      ok_moe &= std::isfinite(e.rel) && e.rel < 2e-5;
      be->set_gemm_mode(cuda::GemmMode::Fast);
    }
    be->set_moe_path(cuda::MoePath::Auto);
    auto us = [](double ms) { return ms > 0 ? fmt::format("{:.1f} us", ms * 1e3) : std::string("-"); };
    auto gbs = [&](double ms) {
      if (ms <= 0) return std::string("-");
      const double v = bytes / (ms * 1e-3) / 1e9;
      return fmt::format("{:.0f} ({:.0f}%)", v, 100.0 * v / c.hbm_gbs);
    };
    auto ratio = [](double a, double b) { return a > 0 && b > 0 ? fmt::format("{:.2f}x", a / b) : std::string("-"); };
    const double tf = t_f > 0 ? flop / (t_f * 1e-3) / 1e12 : 0, td = t_d > 0 ? flop / (t_d * 1e-3) / 1e12 : 0;
    const double tf128 = t_f128 > 0 ? flop / (t_f128 * 1e-3) / 1e12 : 0;
    std::printf("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", T,
                n_used, us(t_g).c_str(),
                gbs(t_g).c_str(), us(t_p).c_str(), us(t_f).c_str(), gbs(t_f).c_str(),
                tf > 0 ? fmt::format("{:.0f}", tf).c_str() : "-", td > 0 ? fmt::format("{:.0f}", td).c_str() : "-",
                td > 0 && tf > 0 ? fmt::format("{:.0f}%", 100.0 * tf / td).c_str() : "-", ratio(t_p, t_f).c_str(),
                ratio(t_g, t_f).c_str(), exact.c_str(), fp8_diff.c_str(), us(t_f128).c_str(),
                tf128 > 0 ? fmt::format("{:.0f}", tf128).c_str() : "-", ratio(t_f, t_f128).c_str(), fp8_diff128.c_str(),
                be->moe_fp8_tile_rows_for(int64_t(T) * k, E));
    std::fflush(stdout);
  }
  std::printf("fast-mode Auto: grouped fp32 up to %lld tokens, grouped-fp8 above\n",
              (long long)be->moe_grouped_max_tokens());
  return ok_moe;
}

}  // namespace ds::gpubench
