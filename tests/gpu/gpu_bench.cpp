// Benchmarks of the CUDA backend (docs/PERF.md), every figure against ceilings measured in the same run:
// the HBM ceiling (hbm_ceiling.h: best of a device-to-device copy and a read-only kernel over 4 GiB),
// cuBLASLt BF16 and FP8 (block-scaled) GEMM rates on a large square problem. `gpu_bench gemv` runs 0 only.
//   0. Decode GEMV at every decode-time weight of the full-width model, M = 1..8, graph-timed, against the
//      pre-issue-18 kernel and cuBLASLt (gpu_bench_gemv.cpp).
//   1. FP8 block GEMM at the model's shapes, M = 1..4096: ours (linear(), fast mode: the fp32 weight-
//      streaming kernel for M <= 8, activation quantisation + cuBLASLt above) vs cuBLASLt alone
//      (pre-quantised activations, M padded to 16 where it refuses smaller).
//   2. Sparse MLA (absorbed, topk 2048 per token, 128 heads, 576-wide BF16 latent rows): SIMT vs tensor-core
//      kernel, decode batch 1..128 x context 4K..128K and a 4096-query prefill: bytes/s, TFLOP/s
//      (2, 3, 3a and 3b: gpu_bench_attention.cpp).
//   3. Indexer scores: SIMT vs tensor-core kernel, decode batch 1..128 x context 4K..128K and a prefill chunk
//      of 8192 queries of one sequence.
//   3a. Indexer scores on IndexerMode::Fp8 values (`gpu_bench indexer-wgmma`, also part of `indexer`): the
//      mma.sync kernel vs the FP8 wgmma kernel, prefill 4K / 8K / 16K and decode batch 1 / 32 at 4K.
//   3b. Dense causal MHA prefill (`gpu_bench mha`) vs the absorbed tensor-core kernel over the same keys.
//   4. MoE experts (256 x FP8, top-8): grouped fp32, per-expert and grouped FP8 paths, T = 1..8192, the
//      FP8 path against a cuBLASLt FP8 dense GEMM pair of equal FLOPs (gpu_bench_moe.cpp).
//   4b. FP8 KV cache (`gpu_bench kvfp8`): MLA and indexer kernels over BF16 / fp32 vs packed FP8 pools
//      (gpu_bench_kvfp8.cpp).
//   5. Sampling (Backend::sample) at 1 / 64 / 256 rows of 129,280 logits: greedy, top-p, top-k + top-p,
//      greedy + logprobs; against the old path: the logits copied to the host + the host sampler
//      (OpenMP over rows, as the engine's host path).
// Timing: CUDA events around each call on the backend's stream, median of >= 15 after warm-up; weights
// rotated over enough copies that L2 (50 MB) cannot serve them; inputs random, never zeros. The shared
// state and helpers (backend, generator, timing, random buffers, ceilings): gpu_bench_util.h.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/compute_ceiling.h"
#include "backend/cuda/hbm_ceiling.h"
#include "backend/cuda/kernels.h"
#include "check_util.h"
#include "gpu_bench_attention.h"
#include "gpu_bench_gemv.h"
#include "gpu_bench_kvfp8.h"
#include "gpu_bench_moe.h"
#include "gpu_bench_util.h"
#include "runtime/sampler.h"

using namespace ds;
using namespace ds::backend;
using namespace ds::gpubench;
using cuda::CudaBackend;

namespace {
Ceilings measure_ceilings() {
  Ceilings c;
  const cuda::HbmCeiling h = cuda::measure_hbm_ceiling();
  c.hbm_gbs = h.best_gbs();
  std::printf("%s\n", h.describe().c_str());
  const cuda::ComputeCeiling cc = cuda::measure_compute_ceiling();
  c.bf16_tflops = cc.bf16_tflops;
  c.fp8_tflops = cc.fp8_tflops;
  std::printf("%s\n", cc.describe().c_str());
  return c;
}

void bench_gemm(const Ceilings& c) {
  struct Shape {
    const char* name;
    int N, K;
  };
  const Shape shapes[] = {{"q_a+kv_a", 2112, 7168}, {"q_b", 24576, 1536}, {"kv_b", 32768, 512},
                          {"o_proj", 7168, 16384},   {"expert gate+up", 4096, 7168}, {"expert down", 7168, 2048},
                          {"lm_head", 129280, 7168}};
  const int Ms[] = {1, 2, 4, 8, 16, 32, 64, 128, 512, 4096};
  std::printf("\n| shape | N x K | M | ours | ours path | cuBLASLt | ours vs cuBLASLt | ours weight GB/s (%% HBM) | ours TFLOP/s (%% FP8 peak) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  be->set_gemm_mode(cuda::GemmMode::Fast);
  cuda::LtGemm lt;
  for (const Shape& s : shapes) {
    const size_t wbytes = size_t(s.N) * s.K;
    const int copies = int(std::max<size_t>(1, (size_t(400) << 20) / wbytes + 1));
    // Random FP8 weight + scales, uploaded `copies` times.
    std::vector<uint8_t> wq(wbytes);
    for (auto& v : wq) {
      v = uint8_t(xorshift() >> 24);
      if ((v & 0x7f) == 0x7f) v ^= 1;
    }
    const int nb = (s.N + 127) / 128, kb = (s.K + 127) / 128;
    std::vector<float> sc(size_t(nb) * kb);
    for (auto& v : sc) v = 1e-3f * (1.0f + float(xorshift() % 1000) / 1000.f);
    HostTensor hw{"w", DType::F8_E4M3, {s.N, s.K}, wq.data()}, hs{"s", DType::F32, {nb, kb}, sc.data()};
    std::vector<LinearWeight> ws;
    for (int i = 0; i < copies; ++i) ws.push_back(be->load_linear(hw, &hs));
    for (int M : Ms) {
      if (size_t(M) * s.N * 4 > (size_t(6) << 30)) continue;
      Tensor x = rand_f32({M, s.K});
      Tensor y;
      std::string path;
      const double t_ours = time_ms([&](int i) {
        y = be->linear(x, ws[size_t(i) % ws.size()]);
        path = be->last_gemm_path();
      }, M >= 512 ? 10 : 20);
      // cuBLASLt alone on pre-quantised activations (M padded to 16).
      const int Ml = std::max(M, 16);
      Tensor xq = be->empty({Ml, s.K}, DType::F8_E4M3), xs = be->empty({kb + 1, (Ml + 3) / 4 * 4 + 4}, DType::F32);
      fill_random(xq.raw(), xq.nbytes());
      std::vector<float> one(size_t(xs.numel()), 1e-2f);
      DS_CUDA_CHECK(cudaMemcpyAsync(xs.raw(), one.data(), one.size() * 4, cudaMemcpyHostToDevice, be->stream()));
      DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
      Tensor yl = be->empty({Ml, s.N}, DType::BF16);
      bool ok = true;
      const double t_lt = time_ms([&](int i) {
        const auto r = CudaBackend::weight_ref(ws[size_t(i) % ws.size()]);
        ok &= lt.fp8(static_cast<const uint8_t*>(r.data), r.scale, xq.data<uint8_t>(), xs.data<float>(), yl.raw(), false,
                     Ml, s.N, s.K, be->stream());
      }, M >= 512 ? 10 : 20);
      const double flop = 2.0 * M * s.N * s.K;
      const double gbs = double(wbytes) / (t_ours * 1e-3) / 1e9, tf = flop / (t_ours * 1e-3) / 1e12;
      std::printf("| %s | %dx%d | %d | %.1f us | %s | %s | %s | %.0f (%.0f%%) | %.1f (%.0f%%) |\n", s.name, s.N, s.K, M,
                  t_ours * 1e3, path.c_str(), ok ? fmt::format("{:.1f} us{}", t_lt * 1e3, Ml != M ? " (M=16)" : "").c_str() : "n/a",
                  ok ? fmt::format("{:.2f}x", t_lt / t_ours).c_str() : "-", gbs, 100.0 * gbs / c.hbm_gbs, tf,
                  c.fp8_tflops > 0 ? 100.0 * tf / c.fp8_tflops : 0.0);
      std::fflush(stdout);
    }
  }
}

// Median wall-clock microseconds of fn(i) (synchronous calls) after `warm` calls.
double wall_us(const std::function<void(int)>& fn, int reps = 20, int warm = 3) {
  std::vector<double> us;
  for (int i = 0; i < warm + reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(i);
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= warm) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

void bench_sampling(const Ceilings& c) {
  const int64_t V = 129280;
  struct Mode {
    const char* name;
    float temperature, top_p;
    int top_k;
    bool logprobs;
  };
  const Mode modes[] = {{"greedy", 0.f, 1.f, -1, false},
                        {"T=1 top-p 0.9", 1.f, 0.9f, -1, false},
                        {"T=0.8 top-k 50 top-p 0.95", 0.8f, 0.95f, 50, false},
                        {"T=1 (no filter)", 1.f, 1.f, -1, false},
                        {"greedy + logprobs top 5", 0.f, 1.f, -1, true}};
  std::printf("\n| rows | sampling | GPU sample() | logits GB/s one read (%% HBM) | old: D2H copy | old: host "
              "sampler (%d threads) | old total / GPU |\n|---|---|---|---|---|---|---|\n", omp_get_max_threads());
  for (int64_t R : {1, 64, 256}) {
    // Logits like a model's: a few likely tokens over a long tail.
    Tensor h = gpucheck::randn({R, V}, 2.0f);
    for (int64_t r = 0; r < R; ++r)
      for (int i = 0; i < 20; ++i) h.f32()[r * V + int64_t(xorshift() % uint64_t(V))] += 10.f;
    Tensor logits = be->from_host(h);
    const double d2h = wall_us([&](int) { be->to_host_f32(logits); }, 10, 2);
    const Tensor host = be->to_host_f32(logits);
    for (const Mode& m : modes) {
      SamplingBatch b;
      std::vector<runtime::SamplingParams> params(static_cast<size_t>(R));
      for (int64_t r = 0; r < R; ++r) {
        SamplingRow row;
        row.logits_row = r;
        row.temperature = m.temperature;
        row.top_p = m.top_p;
        row.top_k = m.top_k;
        row.seed = uint64_t(r);
        row.logprobs = m.logprobs;
        row.top_logprobs = m.logprobs ? 5 : 0;
        b.rows.push_back(row);
        auto& p = params[size_t(r)];
        p.temperature = m.temperature, p.top_p = m.top_p, p.top_k = m.top_k, p.logprobs = m.logprobs;
        p.top_logprobs = row.top_logprobs;
      }
      const double gpu = wall_us([&](int i) {
        for (auto& row : b.rows) row.position = uint64_t(i);
        be->sample(logits, b);
      });
      std::vector<std::mt19937_64> gens(static_cast<size_t>(R));
      const double cpu = wall_us([&](int) {
#pragma omp parallel for schedule(dynamic, 4) if (R > 4)
        for (int64_t r = 0; r < R; ++r)
          runtime::sample(host.f32() + r * V, V, params[size_t(r)], {}, 0, gens[size_t(r)]);
      }, 10, 2);
      const double gbs = double(R) * V * 4 / (gpu * 1e-6) / 1e9;
      std::printf("| %lld | %s | %.1f us | %.0f (%.0f%%) | %.1f us | %.1f us | %.1fx |\n", (long long)R, m.name, gpu, gbs,
                  100.0 * gbs / c.hbm_gbs, d2h, cpu, (d2h + cpu) / gpu);
      std::fflush(stdout);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  try {
    auto b = cuda::make_cuda_backend(cuda::options_from_env(0));
    be = b.get();
    cudaDeviceProp prop;
    DS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, %.0f GiB\n", prop.name, prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30));
    const std::string what = argc > 1 ? argv[1] : "all";
    const Ceilings c = measure_ceilings();
    if (what == "all" || what == "gemm" || what == "gemv") gpubench::bench_gemv_decode(be->stream(), prop.multiProcessorCount, c.hbm_gbs);
    if (what == "all" || what == "gemm" || what == "gemv" || what == "gemv-group")
      gpubench::bench_gemv_groups(be->stream(), prop.multiProcessorCount, c.hbm_gbs);
    if (what == "all" || what == "gemm") bench_gemm(c);
    if (what == "all" || what == "mla") bench_mla(c);
    if (what == "all" || what == "indexer") bench_indexer(c);
    if (what == "all" || what == "indexer" || what == "indexer-wgmma") bench_indexer_wgmma(c);
    if (what == "all" || what == "mha") bench_mha(c);
    bool ok_kv = true, ok_moe = true;
    if (what == "all" || what == "kvfp8") ok_kv = gpubench::bench_kv_fp8(*be, c.hbm_gbs);
    if (what == "all" || what == "moe") {
      std::vector<int> Ts = {1, 8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 2048, 4096, 8192};
      if (const char* list = std::getenv("GPU_BENCH_MOE_T")) {  // "8192" or "1024,8192": profiling, A/B runs
        Ts.clear();
        for (const char* p = list; *p;) {
          Ts.push_back(std::atoi(p));
          while (*p && *p != ',') ++p;
          if (*p == ',') ++p;
        }
      }
      ok_moe = bench_moe(c, Ts);
    }
    if (what == "all" || what == "sampling") bench_sampling(c);
    if (!ok_moe) std::printf("gpu_bench: FAILED: a MoE path differs from the per-expert path (or was not taken)\n");
    if (!ok_kv) std::printf("gpu_bench: FAILED: indexer scores over FP8 keys differ from the same keys in fp32\n");
    return ok_moe && ok_kv ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: error: %s\n", e.what());
    return 2;
  }
}
