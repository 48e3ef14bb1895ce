// gpu_bench's decode GEMV table (docs/PERF.md): every weight the full-width model streams at decode, at
// M = 1, 2, 4, 8 tokens, timed the way a decode step runs them (launches recorded in a CUDA graph, replayed;
// per-launch time = replay time / launches, so launch gaps inside a graph count, host enqueue does not).
// Columns: our kernel at its default shape and K split; the pre-issue-18 kernel (gemv_before.cu); our
// kernel at the other tile shapes and at half / double the K split (to check the defaults); cuBLASLt on the
// same weight (FP8 block-scaled at M padded to 16, where it refuses less; BF16 at M). Weight copies rotate so
// that L2 cannot serve them; weights and inputs random (never zeros). The "diff" column compares ours with
// the pre-issue-18 kernel (both fp32-accurate: rounding-level differences only).
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/kernels.h"
#include "gemv_before.h"
#include "gpu_bench_gemv.h"

namespace ds::gpubench {

using backend::cuda::GemvTile;
using backend::cuda::WeightRef;
using backend::cuda::WType;

namespace {
std::mt19937_64& gen() {
  static std::mt19937_64 g(1234);
  return g;
}

// Random bytes: a 16 MiB host block, tiled over the buffer on the device. mask bounds BF16 exponents;
// e4m3 NaN codes are avoided.
void fill_bytes(void* dev, size_t bytes, uint8_t mask, cudaStream_t st) {
  const size_t blk = std::min<size_t>(bytes, size_t(16) << 20);
  std::vector<uint8_t> h(blk);
  for (auto& v : h) {
    v = uint8_t(gen()()) & mask;
    if ((v & 0x7f) == 0x7f) v ^= 1;
  }
  DS_CUDA_CHECK(cudaMemcpyAsync(dev, h.data(), blk, cudaMemcpyHostToDevice, st));
  for (size_t off = blk; off < bytes; off += blk)
    DS_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dev) + off, dev, std::min(blk, bytes - off),
                                  cudaMemcpyDeviceToDevice, st));
  DS_CUDA_CHECK(cudaStreamSynchronize(st));
}

float* upload(const std::vector<float>& h, cudaStream_t st) {
  float* d = nullptr;
  DS_CUDA_CHECK(cudaMalloc(&d, h.size() * 4));
  DS_CUDA_CHECK(cudaMemcpyAsync(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice, st));
  DS_CUDA_CHECK(cudaStreamSynchronize(st));
  return d;
}

// Median microseconds per launch: `calls` launches of fn(i) recorded into one graph, replayed 2 + 9
// times (medians of the last 9). fn(0) runs once uncaptured first (plans, lazy loading). NaN when fn
// reports failure.
double graph_us(cudaStream_t st, int calls, const std::function<bool(int)>& fn) {
  if (!fn(0)) return NAN;
  DS_CUDA_CHECK(cudaStreamSynchronize(st));
  cudaGraph_t g;
  cudaGraphExec_t ex;
  DS_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  bool ok = true;
  for (int i = 0; i < calls; ++i) ok &= fn(i);
  DS_CUDA_CHECK(cudaStreamEndCapture(st, &g));
  DS_CUDA_CHECK(cudaGraphInstantiate(&ex, g, 0));
  cudaEvent_t a, b;
  DS_CUDA_CHECK(cudaEventCreate(&a));
  DS_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int r = 0; r < 11; ++r) {
    DS_CUDA_CHECK(cudaEventRecord(a, st));
    DS_CUDA_CHECK(cudaGraphLaunch(ex, st));
    DS_CUDA_CHECK(cudaEventRecord(b, st));
    DS_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    DS_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    if (r >= 2) ms.push_back(t);
  }
  DS_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(a), cudaEventDestroy(b);
  cudaGraphExecDestroy(ex), cudaGraphDestroy(g);
  std::sort(ms.begin(), ms.end());
  return ok ? double(ms[ms.size() / 2]) * 1e3 / calls : NAN;
}

std::string tile_name(const GemvTile& t) { return fmt::format("{}x{}m{}", t.R, t.U, t.mode); }

std::string us(double t) { return std::isnan(t) ? "n/a" : fmt::format("{:.1f}", t); }

struct Shape {
  const char* name;
  int N, K;
  WType type;
};
}  // namespace

void bench_gemv_decode(cudaStream_t st, int num_sms, double hbm_gbs) {
  namespace cu = backend::cuda;
  // The full-width model's decode-time weights (DeepSeek-V3.2: FP8 with 128 x 128 block scales, except the
  // indexer's head weights, the router and lm_head in BF16). The MLA absorptions (kv_b) run in their own
  // head-batched kernel and the routed experts in the MoE kernels: not here.
  const Shape shapes[] = {{"q_a", 1536, 7168, WType::FP8},           {"kv_a", 576, 7168, WType::FP8},
                          {"q_b", 24576, 1536, WType::FP8},          {"o_proj", 7168, 16384, WType::FP8},
                          {"idx wq_b", 8192, 1536, WType::FP8},      {"idx wk", 128, 7168, WType::FP8},
                          {"idx weights_proj", 64, 7168, WType::BF16}, {"dense gate / up", 18432, 7168, WType::FP8},
                          {"dense down", 7168, 18432, WType::FP8},   {"router", 256, 7168, WType::BF16},
                          {"shared gate / up", 2048, 7168, WType::FP8}, {"shared down", 7168, 2048, WType::FP8},
                          {"lm_head", 129280, 7168, WType::BF16}};
  const int Ms[] = {1, 2, 4, 8};
  const GemvTile tiles[] = {{1, 2}, {1, 4}, {2, 2}, {2, 4}};
  float* partial = nullptr;
  int* counters = nullptr;
  const size_t partial_floats = size_t(16) * 8 * 131072;
  DS_CUDA_CHECK(cudaMalloc(&partial, partial_floats * 4));
  DS_CUDA_CHECK(cudaMalloc(&counters, cu::kGemvMaxCounters * 4));
  DS_CUDA_CHECK(cudaMemsetAsync(counters, 0, cu::kGemvMaxCounters * 4, st));
  cu::LtGemm lt;
  std::printf("\n| weight | N x K | type | M | ours us | GB/s | %% HBM | tile, K split | before us | %% HBM | after / before "
              "| mode 0 (rna split, streaming loads) 1x2 / 1x4 / 2x2 / 2x4 us | K split /2, x2 us | cuBLASLt us | cuBLASLt %% HBM | ours vs cuBLASLt | diff "
              "| other forms RxU m MODE us |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  double worst = 1e9;
  for (const Shape& s : shapes) {
    const int eb = s.type == WType::FP8 ? 1 : 2;
    const size_t wbytes = size_t(s.N) * s.K * eb;
    const int nb = (s.N + 127) / 128, kb = (s.K + 127) / 128, pitch = (kb + 3) / 4 * 4;
    const size_t sbytes = s.type == WType::FP8 ? size_t(nb) * pitch * 4 : 0;
    const int copies = int(std::clamp<size_t>((size_t(512) << 20) / (wbytes + sbytes), 1, 64));
    std::vector<WeightRef> ws(static_cast<size_t>(copies));
    std::vector<float> sc(size_t(nb) * pitch);
    for (auto& v : sc) v = 1e-3f * float(1.0 + double(gen()() % 1000) / 1000.0);
    for (auto& r : ws) {
      void* d = nullptr;
      DS_CUDA_CHECK(cudaMalloc(&d, wbytes));
      fill_bytes(d, wbytes, s.type == WType::FP8 ? 0xff : 0xbf, st);
      r.data = d;
      r.rows = s.N, r.cols = s.K, r.type = s.type;
      if (s.type == WType::FP8) r.scale = upload(sc, st), r.scale_pitch = pitch;
    }
    const int calls = std::max(copies, 8);
    const double bytes = double(wbytes + sbytes);
    for (int M : Ms) {
      std::vector<float> hx(size_t(M) * s.K);
      std::normal_distribution<float> nd;
      for (auto& v : hx) v = nd(gen());
      float* x = upload(hx, st);
      float *y = nullptr, *y0 = nullptr;
      DS_CUDA_CHECK(cudaMalloc(&y, size_t(M) * s.N * 4));
      DS_CUDA_CHECK(cudaMalloc(&y0, size_t(M) * s.N * 4));
      auto ours = [&](GemvTile t, int ky) {
        return graph_us(st, calls, [&](int i) {
          cu::launch_gemv(x, M, ws[size_t(i % copies)], y, partial, counters, ky, st, t);
          return cudaPeekAtLastError() == cudaSuccess;
        });
      };
      const GemvTile t0 = cu::gemv_tile(ws[0], M);
      const int ky0 = cu::gemv_ksplit(ws[0], M, num_sms);
      const double t_ours = ours(t0, ky0);
      std::vector<float> h_ours(size_t(M) * s.N), h_before(h_ours.size());
      cu::launch_gemv(x, M, ws[0], y, partial, counters, ky0, st);
      DS_CUDA_CHECK(cudaMemcpyAsync(h_ours.data(), y, h_ours.size() * 4, cudaMemcpyDeviceToHost, st));
      const int kyb = cu::gemv_ksplit_before(ws[0], num_sms);
      const double t_before = graph_us(st, calls, [&](int i) {
        cu::launch_gemv_before(x, M, ws[size_t(i % copies)], y0, partial, counters, kyb, st);
        return cudaPeekAtLastError() == cudaSuccess;
      });
      cu::launch_gemv_before(x, M, ws[0], y0, partial, counters, kyb, st);
      DS_CUDA_CHECK(cudaMemcpyAsync(h_before.data(), y0, h_before.size() * 4, cudaMemcpyDeviceToHost, st));
      DS_CUDA_CHECK(cudaStreamSynchronize(st));
      double num = 0, den = 0;
      for (size_t i = 0; i < h_ours.size(); ++i) {
        num = std::max<double>(num, std::fabs(double(h_ours[i]) - h_before[i]));
        den = std::max<double>(den, std::fabs(double(h_before[i])));
      }
      const double diff = std::isfinite(num) && den > 0 ? num / den : INFINITY;
      std::string variants;
      for (const GemvTile& t : tiles) {
        const bool have = !(s.type == WType::BF16 && t.R == 2 && t.U == 4);
        if (!variants.empty()) variants += " / ";
        variants += have ? us(ours(t, cu::gemv_ksplit(ws[0], M, num_sms, t))) : "-";
      }
      const std::string kys = fmt::format("{} / {}", ky0 > 1 ? us(ours(t0, std::max(1, ky0 / 2))) : "-",
                                          ky0 * 2 <= 16 && (s.N + 16 * t0.R - 1) / (16 * t0.R) <= cu::kGemvMaxCounters ? us(ours(t0, ky0 * 2)) : "-");
      // The other modes (k_gemv.cu MODE) at M = 1 and 8: times, and the largest diff from the pre-issue-18
      // kernel over them.
      std::string exps = "-";
      if (M == 1 || M == 8) {
        // m18 / m24: the fast mode's one-MMA form (kFastTf32Gemv) of the default tiles.
        const std::vector<GemvTile> ex = s.type == WType::FP8
                                             ? std::vector<GemvTile>{{2, 2, 0}, {2, 2, 18}}
                                             : std::vector<GemvTile>{{1, 2, 8}, {2, 2, 0}, {2, 2, 2}, {1, 2, 24}, {2, 2, 24}};
        double exp_diff = 0;
        exps.clear();
        for (const GemvTile& t : ex) {
          const int ky = cu::gemv_ksplit(ws[0], M, num_sms, t);
          exps += fmt::format("{}{} {}", exps.empty() ? "" : ", ", tile_name(t), us(ours(t, ky)));
          cu::launch_gemv(x, M, ws[0], y, partial, counters, ky, st, t);
          DS_CUDA_CHECK(cudaMemcpyAsync(h_ours.data(), y, h_ours.size() * 4, cudaMemcpyDeviceToHost, st));
          DS_CUDA_CHECK(cudaStreamSynchronize(st));
          double n2 = 0, d2 = 0;
          for (size_t i = 0; i < h_ours.size(); ++i) {
            n2 = std::max<double>(n2, std::fabs(double(h_ours[i]) - h_before[i]));
            d2 = std::max<double>(d2, std::fabs(double(h_before[i])));
          }
          exp_diff = std::max(exp_diff, std::isfinite(n2) && d2 > 0 ? n2 / d2 : INFINITY);
        }
        exps += fmt::format("; diff {:.1e}", exp_diff);
      }
      // cuBLASLt on the same weights.
      double t_lt = NAN;
      const int Ml = s.type == WType::FP8 ? 16 : M;
      void *xq = nullptr, *xs = nullptr, *yl = nullptr;
      DS_CUDA_CHECK(cudaMalloc(&xq, size_t(Ml) * s.K * 2));
      DS_CUDA_CHECK(cudaMalloc(&yl, size_t(Ml) * s.N * 4));
      fill_bytes(xq, size_t(Ml) * s.K * 2, 0xbf, st);
      if (s.type == WType::FP8) {
        std::vector<float> one(size_t(kb + 1) * ((Ml + 3) / 4 * 4 + 4), 1e-2f);
        xs = upload(one, st);
        t_lt = graph_us(st, calls, [&](int i) {
          const WeightRef& r = ws[size_t(i % copies)];
          return lt.fp8(static_cast<const uint8_t*>(r.data), r.scale, static_cast<uint8_t*>(xq), static_cast<float*>(xs),
                        yl, false, Ml, s.N, s.K, st);
        });
      } else {
        t_lt = graph_us(st, calls, [&](int i) {
          return lt.bf16(static_cast<const uint16_t*>(ws[size_t(i % copies)].data), static_cast<uint16_t*>(xq),
                         static_cast<float*>(yl), Ml, s.N, s.K, st);
        });
      }
      const double gbs = bytes / (t_ours * 1e-6) / 1e9, gbs_b = bytes / (t_before * 1e-6) / 1e9;
      const double lt_pct = std::isnan(t_lt) ? NAN : 100.0 * bytes / (t_lt * 1e-6) / 1e9 / hbm_gbs;
      worst = std::min(worst, 100.0 * gbs / hbm_gbs);
      std::printf("| %s | %dx%d | %s | %d | %s | %.0f | %.0f%% | %s, %d | %s | %.0f%% | %.2fx | %s | %s | %s%s | %s | %s | %.1e | %s |\n",
                  s.name, s.N, s.K, s.type == WType::FP8 ? "FP8" : "BF16", M, us(t_ours).c_str(), gbs,
                  100.0 * gbs / hbm_gbs, tile_name(t0).c_str(), ky0, us(t_before).c_str(), 100.0 * gbs_b / hbm_gbs,
                  t_before / t_ours, variants.c_str(), kys.c_str(), us(t_lt).c_str(),
                  s.type == WType::FP8 ? " (M=16)" : "", std::isnan(lt_pct) ? "-" : fmt::format("{:.0f}%", lt_pct).c_str(),
                  std::isnan(t_lt) ? "-" : fmt::format("{:.2f}x", t_lt / t_ours).c_str(), diff, exps.c_str());
      std::fflush(stdout);
      cudaFree(x), cudaFree(y), cudaFree(y0), cudaFree(xq), cudaFree(yl);
      if (xs) cudaFree(xs);
    }
    for (auto& r : ws) {
      cudaFree(const_cast<void*>(r.data));
      if (r.scale) cudaFree(const_cast<float*>(r.scale));
    }
  }
  std::printf("decode GEMV: lowest share of the HBM ceiling over these weights and M = 1..8: %.0f%%\n", worst);
  cudaFree(partial), cudaFree(counters);
}

void bench_gemv_groups(cudaStream_t st, int num_sms, double hbm_gbs) {
  namespace cu = backend::cuda;
  struct Group {
    const char* name;
    std::vector<Shape> ws;
  };
  const Group groups[] = {{"q_a + kv_a + idx wk", {{"q_a", 1536, 7168, WType::FP8}, {"kv_a", 576, 7168, WType::FP8},
                                                    {"idx wk", 128, 7168, WType::FP8}}},
                          {"q_a + kv_a (V3)", {{"q_a", 1536, 7168, WType::FP8}, {"kv_a", 576, 7168, WType::FP8}}},
                          {"shared gate + up", {{"gate", 2048, 7168, WType::FP8}, {"up", 2048, 7168, WType::FP8}}},
                          {"dense gate + up", {{"gate", 18432, 7168, WType::FP8}, {"up", 18432, 7168, WType::FP8}}}};
  float* partial = nullptr;
  int* counters = nullptr;
  const size_t partial_floats = size_t(16) * 8 * 65536;
  DS_CUDA_CHECK(cudaMalloc(&partial, partial_floats * 4));
  DS_CUDA_CHECK(cudaMalloc(&counters, cu::kGemvMaxCounters * 4));
  DS_CUDA_CHECK(cudaMemsetAsync(counters, 0, cu::kGemvMaxCounters * 4, st));
  std::printf("\n| weights (one x) | MB | M | mode | separate us | %% HBM | one launch us | %% HBM | K split | saved us | max diff |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Group& gr : groups) {
    // Weight copies rotate past L2 as in bench_gemv_decode; each copy holds every weight of the group.
    double bytes = 0;
    for (const Shape& s : gr.ws) bytes += double(s.N) * s.K + double((s.N + 127) / 128) * (((s.K + 127) / 128 + 3) / 4 * 4) * 4;
    const int copies = int(std::clamp<double>(double(512 << 20) / bytes, 1, 64));
    std::vector<cu::GemvGroup> gs(static_cast<size_t>(copies));
    for (auto& g : gs) {
      for (const Shape& s : gr.ws) {
        WeightRef r;
        void* d = nullptr;
        DS_CUDA_CHECK(cudaMalloc(&d, size_t(s.N) * s.K));
        fill_bytes(d, size_t(s.N) * s.K, 0xff, st);
        const int nb = (s.N + 127) / 128, pitch = ((s.K + 127) / 128 + 3) / 4 * 4;
        std::vector<float> sc(size_t(nb) * pitch);
        for (auto& v : sc) v = 1e-3f * float(1.0 + double(gen()() % 1000) / 1000.0);
        r.data = d, r.rows = s.N, r.cols = s.K, r.type = s.type, r.scale = upload(sc, st), r.scale_pitch = pitch;
        g.w[g.count++] = r;
      }
    }
    const int calls = std::max(copies, 8);
    for (int M : {1, 8}) {
      std::vector<float> hx(size_t(M) * gr.ws[0].K);
      std::normal_distribution<float> nd;
      for (auto& v : hx) v = nd(gen());
      float* x = upload(hx, st);
      std::vector<float*> ysep, ygrp;
      for (const Shape& s : gr.ws) {
        float *a = nullptr, *b = nullptr;
        DS_CUDA_CHECK(cudaMalloc(&a, size_t(M) * s.N * 4));
        DS_CUDA_CHECK(cudaMalloc(&b, size_t(M) * s.N * 4));
        ysep.push_back(a), ygrp.push_back(b);
      }
      for (int mode : {2, 18}) {
        GemvTile t = cu::gemv_tile(gs[0].w[0], M);
        t.mode = mode;
        const double t_sep = graph_us(st, calls, [&](int i) {
          const cu::GemvGroup& g = gs[size_t(i % copies)];
          for (int w = 0; w < g.count; ++w)
            cu::launch_gemv(x, M, g.w[w], ysep[size_t(w)], partial, counters, cu::gemv_ksplit(g.w[w], M, num_sms, t), st, t);
          return cudaPeekAtLastError() == cudaSuccess;
        });
        const int ky = cu::gemv_ksplit(gs[0], M, num_sms, t);
        const double t_grp = graph_us(st, calls, [&](int i) {
          cu::GemvGroup g = gs[size_t(i % copies)];
          for (int w = 0; w < g.count; ++w) g.y[w] = ygrp[size_t(w)];
          cu::launch_gemv_group(x, M, g, partial, counters, ky, st, t);
          return cudaPeekAtLastError() == cudaSuccess;
        });
        // The same copy through both, compared: K splits differ, so rounding-level differences only.
        double diff = 0;
        for (size_t w = 0; w < gr.ws.size(); ++w) {
          const size_t n = size_t(M) * gr.ws[w].N;
          std::vector<float> a(n), b(n);
          DS_CUDA_CHECK(cudaMemcpy(a.data(), ysep[w], n * 4, cudaMemcpyDeviceToHost));
          DS_CUDA_CHECK(cudaMemcpy(b.data(), ygrp[w], n * 4, cudaMemcpyDeviceToHost));
          double num = 0, den = 0;
          for (size_t i = 0; i < n; ++i) num = std::max<double>(num, std::fabs(double(a[i]) - b[i])), den = std::max<double>(den, std::fabs(double(a[i])));
          diff = std::max(diff, std::isfinite(num) && den > 0 ? num / den : INFINITY);
        }
        auto pct = [&](double t_us) { return 100.0 * bytes / (t_us * 1e-6) / 1e9 / hbm_gbs; };
        std::printf("| %s | %.1f | %d | %d | %s | %.0f%% | %s | %.0f%% | %d | %s | %.1e |\n", gr.name, bytes / 1e6, M, mode,
                    us(t_sep).c_str(), pct(t_sep), us(t_grp).c_str(), pct(t_grp), ky, us(t_sep - t_grp).c_str(), diff);
        std::fflush(stdout);
      }
      cudaFree(x);
      for (float* p : ysep) cudaFree(p);
      for (float* p : ygrp) cudaFree(p);
    }
    for (auto& g : gs)
      for (int w = 0; w < g.count; ++w) {
        cudaFree(const_cast<void*>(g.w[w].data));
        cudaFree(const_cast<float*>(g.w[w].scale));
      }
  }
  cudaFree(partial), cudaFree(counters);
}

}  // namespace ds::gpubench
