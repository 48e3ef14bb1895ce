// Benchmarks of the CUDA backend (docs/PERF.md), every figure against ceilings measured in the same run:
// the HBM ceiling (hbm_ceiling.h: best of a device-to-device copy and a read-only kernel over 4 GiB),
// cuBLASLt BF16 and FP8 (block-scaled) GEMM rates on a large square problem. `gpu_bench gemv` runs 0 only.
//   0. Decode GEMV at every decode-time weight of the full-width model, M = 1..8, graph-timed, against the
//      pre-issue-18 kernel and cuBLASLt (gpu_bench_gemv.cpp).
//   1. FP8 block GEMM at the model's shapes, M = 1..4096: ours (linear(), fast mode: the fp32 weight-
//      streaming kernel for M <= 8, activation quantisation + cuBLASLt above) vs cuBLASLt alone
//      (pre-quantised activations, M padded to 16 where it refuses smaller).
//   2. Sparse MLA (absorbed, topk 2048 per token, 128 heads, 576-wide BF16 latent rows): SIMT vs tensor-core
//      kernel, decode batch 1..128 x context 4K..128K and a 4096-query prefill: bytes/s, TFLOP/s.
//   3. Indexer scores: SIMT vs tensor-core kernel, decode batch 1..128 x context 4K..128K and a prefill chunk
//      of 8192 queries of one sequence.
//   3a. Indexer scores on IndexerMode::Fp8 values (`gpu_bench indexer-wgmma`, also part of `indexer`): the
//      mma.sync kernel vs the FP8 wgmma kernel, prefill 4K / 8K / 16K and decode batch 1 / 32 at 4K.
//   3b. Dense causal MHA prefill (`gpu_bench mha`) vs the absorbed tensor-core kernel over the same keys.
//   4. MoE experts (256 x FP8, top-8): grouped fp32, per-expert and grouped FP8 paths, T = 1..8192, the
//      FP8 path against a cuBLASLt FP8 dense GEMM pair of equal FLOPs.
//   4b. FP8 KV cache (`gpu_bench kvfp8`): MLA and indexer kernels over BF16 / fp32 vs packed FP8 pools
//      (gpu_bench_kvfp8.cpp).
//   5. Sampling (Backend::sample) at 1 / 64 / 256 rows of 129,280 logits: greedy, top-p, top-k + top-p,
//      greedy + logprobs; against the old path: the logits copied to the host + the host sampler
//      (OpenMP over rows, as the engine's host path).
// Timing: CUDA events around each call on the backend's stream, median of >= 15 after warm-up; weights
// rotated over enough copies that L2 (50 MB) cannot serve them; inputs random, never zeros.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <tuple>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/hbm_ceiling.h"
#include "backend/cuda/kernels.h"
#include "check_util.h"
#include "gpu_bench_gemv.h"
#include "gpu_bench_kvfp8.h"
#include "runtime/sampler.h"

using namespace ds;
using namespace ds::backend;
using cuda::CudaBackend;

namespace {
CudaBackend* be = nullptr;
bool ok_moe = true;  // the MoE section's correctness check

uint64_t xs_state = 0x9E3779B97F4A7C15ull;
inline uint64_t xorshift() {
  xs_state ^= xs_state << 13;
  xs_state ^= xs_state >> 7;
  xs_state ^= xs_state << 17;
  return xs_state;
}

// Median milliseconds of fn() over `reps` runs after `warm` runs (events on the backend's stream).
double time_ms(const std::function<void(int)>& fn, int reps = 20, int warm = 3) {
  cudaEvent_t a, b;
  DS_CUDA_CHECK(cudaEventCreate(&a));
  DS_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < warm + reps; ++i) {
    DS_CUDA_CHECK(cudaEventRecord(a, be->stream()));
    fn(i);
    DS_CUDA_CHECK(cudaEventRecord(b, be->stream()));
    DS_CUDA_CHECK(cudaEventSynchronize(b));
    float t;
    DS_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    if (i >= warm) ms.push_back(t);
  }
  DS_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A device buffer of random bytes (random host block, tiled on the device).
void fill_random(void* dev, size_t bytes, uint8_t mask = 0xff, uint8_t avoid_nan_fp8 = 1) {
  const size_t blk = std::min<size_t>(bytes, size_t(16) << 20);
  std::vector<uint8_t> h(blk);
  for (auto& v : h) {
    v = uint8_t(xorshift() >> 24) & mask;
    if (avoid_nan_fp8 && (v & 0x7f) == 0x7f) v ^= 1;  // 0x7f / 0xff are e4m3 NaN
  }
  // On the backend's stream (a legacy-stream cudaMemcpy would not be ordered with its kernels).
  DS_CUDA_CHECK(cudaMemcpyAsync(dev, h.data(), blk, cudaMemcpyHostToDevice, be->stream()));
  for (size_t off = blk; off < bytes; off += blk)
    DS_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dev) + off, dev, std::min(blk, bytes - off), cudaMemcpyDeviceToDevice,
                                  be->stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
}

Tensor rand_f32(std::vector<int64_t> shape, float scale = 1.0f) {
  Tensor h = gpucheck::randn(shape, scale);
  return be->from_host(h);
}

// Normal random values, a block of at most 4M generated on the host and tiled over the tensor on the
// device (large pools: host generation would dominate the run; repeats every 16 MB do not matter here).
Tensor rand_f32_tiled(std::vector<int64_t> shape, float scale = 1.0f) {
  Tensor t = be->empty(shape, DType::F32);
  const int64_t n = t.numel(), blk = std::min<int64_t>(n, int64_t(4) << 20);
  Tensor h = gpucheck::randn({blk}, scale);
  DS_CUDA_CHECK(cudaMemcpyAsync(t.raw(), h.f32(), size_t(blk) * 4, cudaMemcpyHostToDevice, be->stream()));
  for (int64_t off = blk; off < n; off += blk)
    DS_CUDA_CHECK(cudaMemcpyAsync(t.data<float>() + off, t.raw(), size_t(std::min(blk, n - off)) * 4,
                                  cudaMemcpyDeviceToDevice, be->stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
  return t;
}

struct Ceilings {
  double hbm_gbs = 0, bf16_tflops = 0, fp8_tflops = 0;  // hbm_gbs: hbm_ceiling.h
};

Ceilings measure_ceilings() {
  Ceilings c;
  const cuda::HbmCeiling h = cuda::measure_hbm_ceiling();
  c.hbm_gbs = h.best_gbs();
  std::printf("%s\n", h.describe().c_str());
  const int S = 8192;
  cuda::LtGemm lt;
  void *w, *x, *y, *ws, *xs;
  DS_CUDA_CHECK(cudaMalloc(&w, size_t(S) * S * 2));
  DS_CUDA_CHECK(cudaMalloc(&x, size_t(S) * S * 2));
  DS_CUDA_CHECK(cudaMalloc(&y, size_t(S) * S * 4));
  DS_CUDA_CHECK(cudaMalloc(&ws, size_t(S / 128) * (S / 128) * 4));
  DS_CUDA_CHECK(cudaMalloc(&xs, size_t(S) * (S / 128) * 4));
  fill_random(w, size_t(S) * S * 2, 0xbf);  // bf16 with bounded exponents
  fill_random(x, size_t(S) * S * 2, 0xbf);
  const double flop = 2.0 * S * S * S;
  double t = time_ms([&](int) { lt.bf16(static_cast<uint16_t*>(w), static_cast<uint16_t*>(x), static_cast<float*>(y), S, S, S, be->stream()); }, 10, 2);
  c.bf16_tflops = flop / (t * 1e-3) / 1e12;
  std::vector<float> sc(size_t(S) * (S / 128), 1e-3f);
  DS_CUDA_CHECK(cudaMemcpyAsync(ws, sc.data(), size_t(S / 128) * (S / 128) * 4, cudaMemcpyHostToDevice, be->stream()));
  DS_CUDA_CHECK(cudaMemcpyAsync(xs, sc.data(), sc.size() * 4, cudaMemcpyHostToDevice, be->stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
  bool ok = true;
  t = time_ms([&](int) {
    ok &= lt.fp8(static_cast<uint8_t*>(w), static_cast<float*>(ws), static_cast<uint8_t*>(x), static_cast<float*>(xs), y,
                 false, S, S, S, be->stream());
  }, 10, 2);
  c.fp8_tflops = ok ? flop / (t * 1e-3) / 1e12 : 0;
  cudaFree(w), cudaFree(x), cudaFree(y), cudaFree(ws), cudaFree(xs);
  std::printf("compute ceilings: cuBLASLt %dx%dx%d BF16 %.0f TFLOP/s, FP8 block-scaled %.0f TFLOP/s\n", S, S, S,
              c.bf16_tflops, c.fp8_tflops);
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

// One MLA call's shapes: B query tokens of `seqs` sequences (queries of a sequence at consecutive positions
// ending at ctx - 1), each with K random ascending positions < its position + 1, pages scattered over the pool.
struct MlaProblem {
  AttnBatch ab;
  std::vector<Tensor> idx;  // device I32 [B, K]; several sets rotated so that L2 cannot serve the keys
};
MlaProblem mla_problem(int B, int seqs, int ctx, int K, int page, int64_t pool_rows, int sets) {
  MlaProblem pr;
  pr.ab.page_size = page;
  const int pages = ctx / page, per_seq = B / seqs;
  for (int s = 0; s < seqs; ++s) {
    std::vector<int32_t> pt(static_cast<size_t>(pages));
    for (int i = 0; i < pages; ++i) pt[size_t(i)] = int32_t(xorshift() % uint64_t(pool_rows / page));
    pr.ab.page_tables.push_back(pt);
    for (int i = 0; i < per_seq; ++i) {
      pr.ab.seq_of_token.push_back(s);
      pr.ab.pos_of_token.push_back(ctx - per_seq + i);
    }
  }
  for (int set = 0; set < sets; ++set) {
    Tensor idx = Tensor::empty({B, K}, DType::I32);
    for (int b = 0; b < B; ++b) {
      const int n = pr.ab.pos_of_token[size_t(b)] + 1;
      std::vector<int32_t> sel;
      std::vector<char> used(size_t(n), 0);
      while (int(sel.size()) < std::min(K, n)) {
        const int32_t p = int32_t(xorshift() % uint64_t(n));
        if (!used[size_t(p)]) used[size_t(p)] = 1, sel.push_back(p);
      }
      std::sort(sel.begin(), sel.end());
      sel.resize(size_t(K), -1);
      std::copy(sel.begin(), sel.end(), idx.i32() + int64_t(b) * K);
    }
    pr.idx.push_back(be->from_host(idx));
  }
  return pr;
}

void bench_mla(const Ceilings& c) {
  const int H = 128, Dl = 512, D = 576, K = 2048, page = 64;
  const int64_t R = int64_t(1) << 21;  // 2M pool rows (2.4 GB of BF16), shared by all sequences' page tables
  Tensor pool = be->empty({R, D}, DType::BF16);
  fill_random(pool.raw(), pool.nbytes(), 0xbf, 0);
  const cuda::GemmMode mode0 = be->options().gemm;
  // Three kernels on the same inputs: SIMT fp32 (exact mode), the mma.sync tensor-core kernel (fast mode, tc
  // pinned; two-part queries and weights) and the wgmma kernel (fast mode, wgmma pinned; bf16 queries and
  // weights). Bytes = the gathered key rows + q + output; useful FLOP = 2 B H K (D + Dl) (the tc kernel issues
  // twice that in MMAs). diff = ||x - simt|| / ||simt||. Times: events around the op (host work included:
  // page-table upload), median; "device" = profile mode's events around the kernel + split merge alone.
  struct Variant {
    cuda::GemmMode mode;
    cuda::MlaKernel pin;
    const char* want;
  };
  const Variant vs[3] = {{cuda::GemmMode::Exact, cuda::MlaKernel::Auto, "simt"},
                         {cuda::GemmMode::Fast, cuda::MlaKernel::Tc, "tc"},
                         {cuda::GemmMode::Fast, cuda::MlaKernel::Wgmma, "wgmma"}};
  auto run = [&](const char* label, int B, int seqs, int ctx, int reps) {
    const int sets = int(std::clamp<int64_t>((int64_t(64) << 20) / (int64_t(B) * K * D * 2), 1, 8));
    MlaProblem pr = mla_problem(B, seqs, ctx, K, page, R, sets);
    Tensor q = B >= 1024 ? rand_f32_tiled({B, H, D}, 0.05f) : rand_f32({B, H, D}, 0.05f);
    double t[3], dev[3], merge[3];
    Tensor out[3];
    std::string path[3];
    for (int k = 0; k < 3; ++k) {
      be->set_gemm_mode(vs[k].mode);
      be->set_mla_kernel(vs[k].pin);
      out[k] = be->mla_attention_absorbed(q, pool, pr.idx[0], pr.ab, Dl, 0.07f);
      path[k] = be->last_mla_path();
      t[k] = time_ms([&](int i) { be->mla_attention_absorbed(q, pool, pr.idx[size_t(i % sets)], pr.ab, Dl, 0.07f); },
                     reps);
      be->set_profile(true);
      be->mla_attention_absorbed(q, pool, pr.idx[0], pr.ab, Dl, 0.07f);
      std::tie(dev[k], merge[k]) = be->last_mla_profile_us();
      be->set_profile(false);
    }
    be->set_gemm_mode(cuda::GemmMode::Fast);
    be->set_mla_kernel(cuda::MlaKernel::Auto);
    be->mla_attention_absorbed(q, pool, pr.idx[0], pr.ab, Dl, 0.07f);
    const std::string auto_path = be->last_mla_path();
    const Tensor ref = be->to_host_f32(out[0]);
    const double e_tc = gpucheck::compare(be->to_host_f32(out[1]), ref).rel;
    const double e_wg = gpucheck::compare(be->to_host_f32(out[2]), ref).rel;
    const double bytes = double(B) * K * D * 2 + double(B) * H * (D + Dl) * 4;
    const double flop = 2.0 * B * H * double(K) * (D + Dl);
    auto tf = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
    const double gbs = bytes / (t[2] * 1e-3) / 1e9;
    const bool paths_ok = path[0] == vs[0].want && path[1] == vs[1].want && path[2] == vs[2].want;
    std::printf("| %s | %d | %d | %.1f us | %.1f us | %.1f | %.1f us | **%.1f** | %.0f (%.1f%%) | %.2fx | %.1f + %.1f us | "
                "%.1f + %.1f us | %.1e | %.1e | %s |%s\n",
                label, B, ctx, t[0] * 1e3, t[1] * 1e3, tf(t[1]), t[2] * 1e3, tf(t[2]), gbs, 100.0 * gbs / c.hbm_gbs,
                t[1] / t[2], dev[1], merge[1], dev[2], merge[2], e_tc, e_wg, auto_path.c_str(),
                paths_ok ? "" : " (a pinned path was not taken!)");
    std::fflush(stdout);
  };
  std::printf("\n| shape | queries | context | SIMT time | TC time | TC TFLOP/s | WGMMA time | WGMMA TFLOP/s "
              "| WGMMA GB/s (%% HBM) | WGMMA vs TC | TC device: attention + merge | WGMMA device: attention + merge "
              "| TC diff | WGMMA diff | auto |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const char* rows = std::getenv("GPU_BENCH_MLA");  // "prefill": the prefill rows alone
  if (!rows || std::string(rows) != "prefill") {
    for (int B : {1, 8, 32, 64, 128})
      for (int ctx : {4096, 32768, 131072}) run("decode", B, B, ctx, 15);
    run("decode", 512, 512, 8192, 5);
  }
  // Prefill-like: 4096 queries of one sequence (positions 4096..8191), 2048 keys each; then 8192 (8192..16383).
  run("prefill", 4096, 1, 8192, 3);
  run("prefill", 8192, 1, 16384, 3);
  be->set_gemm_mode(mode0);
}

// Dense causal MHA prefill (attention_mha_causal, fast mode: bf16 pack + tensor-core kernel) against the
// absorbed tensor-core kernel over the same causal keys (BF16 latent pool, causal_index): one fresh
// sequence of T tokens, 128 heads, full widths. Useful FLOP: 2 H pairs (Dn + Dr + Dv) for MHA, 2 H pairs
// (2 Dl + Dr) absorbed (pairs = T (T + 1) / 2), against cuBLASLt's BF16 rate measured in this run.
void bench_mha(const Ceilings& c) {
  const int H = 128, Dn = 128, Dr = 64, Dv = 128, Dl = 512, D = Dl + Dr, page = 64;
  const cuda::GemmMode mode0 = be->options().gemm;
  be->set_gemm_mode(cuda::GemmMode::Fast);
  std::printf("\n| T | MHA op ms | of which pack ms | MHA TFLOP/s (%% BF16 peak) | kernel alone TFLOP/s (%% BF16 peak) | "
              "absorbed tc ms | absorbed TFLOP/s | attention speed-up |\n|---|---|---|---|---|---|---|---|\n");
  for (int T : {512, 1024, 2048, 4096}) {
    backend::AttnBatch ab;
    ab.page_size = page;
    ab.page_tables = {{}};
    for (int p = 0; p < (T + page - 1) / page; ++p) ab.page_tables[0].push_back(p);
    for (int t = 0; t < T; ++t) ab.seq_of_token.push_back(0), ab.pos_of_token.push_back(t);
    const std::vector<int32_t> row0 = {0};
    Tensor q = rand_f32_tiled({T, H, Dn + Dr}, 0.3f), kvb = rand_f32_tiled({T, H * (Dn + Dv)}),
           lat = rand_f32_tiled({T, D});
    const float scale = 1.0f / std::sqrt(float(Dn + Dr));
    const double t_mha = time_ms([&](int) { be->attention_mha_causal(q, kvb, lat, Dl, Dv, ab, row0, scale); }, 10);
    const std::string path = be->last_mha_path();
    cuda::MhaPackArgs pk;
    pk.kvb = kvb.data<float>(), pk.rope = lat.raw(), pk.rope_stride = D, pk.rope_col0 = Dl;
    pk.N = T, pk.H = H, pk.Dn = Dn, pk.Dr = Dr, pk.Dv = Dv;
    Tensor kp = be->empty({H, T, Dn + Dr}, DType::BF16), vp = be->empty({H, T, Dv}, DType::BF16);
    const double t_pack = time_ms(
        [&](int) { cuda::launch_mha_pack_bf16(pk, kp.data<uint16_t>(), vp.data<uint16_t>(), be->stream()); }, 10);
    // The absorbed kernel over the same keys: 576-wide BF16 latent rows, every position 0..p.
    Tensor pool = be->empty({int64_t((T + page - 1) / page) * page, D}, DType::BF16);
    fill_random(pool.raw(), pool.nbytes(), 0xbf, 0);
    Tensor q_abs = rand_f32_tiled({T, H, D}, 0.05f), idx = be->causal_index(ab);
    const double t_abs = time_ms([&](int) { be->mla_attention_absorbed(q_abs, pool, idx, ab, Dl, 0.07f); }, 5);
    const double pairs = double(T) * (T + 1) / 2;
    const double f_mha = 2.0 * H * pairs * (Dn + Dr + Dv), f_abs = 2.0 * H * pairs * (2 * Dl + Dr);
    auto tf = [](double f, double ms) { return f / (ms * 1e-3) / 1e12; };
    std::printf("| %d | %.3f (%s) | %.3f | %.0f (%.0f%%) | %.0f (%.0f%%) | %.3f (%s) | %.0f | %.1fx |\n", T, t_mha,
                path.c_str(), t_pack, tf(f_mha, t_mha), 100 * tf(f_mha, t_mha) / c.bf16_tflops,
                tf(f_mha, t_mha - t_pack), 100 * tf(f_mha, t_mha - t_pack) / c.bf16_tflops, t_abs, be->last_mla_path(),
                tf(f_abs, t_abs), t_abs / t_mha);
    std::fflush(stdout);
  }
  be->set_gemm_mode(mode0);
}

// The indexer benches' batches: B sequences of ctx keys on shuffled pages (page tables of consecutive page
// ranges, shuffled within each sequence), n_new queries per sequence at the last positions.
AttnBatch shuffled_pages_batch(int B, int ctx, int n_new, int page) {
  AttnBatch ab;
  ab.page_size = page;
  const int pages = (ctx + page - 1) / page;
  for (int b = 0; b < B; ++b) {
    std::vector<int32_t> pt(static_cast<size_t>(pages));
    std::iota(pt.begin(), pt.end(), b * pages);
    std::shuffle(pt.begin(), pt.end(), gpucheck::rng());
    ab.page_tables.push_back(pt);
    for (int p = ctx - n_new; p < ctx; ++p) ab.seq_of_token.push_back(b), ab.pos_of_token.push_back(p);
  }
  return ab;
}

// Causal (query, key) pairs the indexer scores: position + 1 per query.
double scored_pairs(const AttnBatch& ab) {
  double pairs = 0;
  for (int32_t p : ab.pos_of_token) pairs += p + 1;
  return pairs;
}

// Indexer scores (64 heads x 128, top-k 2048): the SIMT fp32 kernel (exact mode) vs the tensor-core
// kernel (fast mode) on the same inputs, device time of the score kernel alone (profile mode: events
// around it, summed over the call's chunks), median of 5 calls; then the top-k's device time. fp32 random
// inputs (the 3-MMA path); "e4m3" rows: q and keys Hadamard + e4m3-rounded as IndexerMode::Fp8 (1 MMA).
// TFLOP/s: useful 2 x heads x 128 per scored (query, key) pair.
void bench_indexer(const Ceilings& c) {
  const int Hi = 64, Di = 128, topk = 2048, page = 64;
  const cuda::GemmMode mode0 = be->options().gemm;
  std::printf("\n| shape | queries | context | values | SIMT scores | TC scores | speed-up | TC TFLOP/s | TC keys GB/s (%% HBM) "
              "| top-k |\n|---|---|---|---|---|---|---|---|---|---|\n");
  // B sequences of ctx keys; n_new queries per sequence at the last positions.
  auto run = [&](const char* label, int B, int ctx, int n_new, bool fp8) {
    const int pages = (ctx + page - 1) / page;
    const AttnBatch ab = shuffled_pages_batch(B, ctx, n_new, page);
    const int64_t T = int64_t(ab.pos_of_token.size());
    Tensor kp = rand_f32_tiled({int64_t(B) * pages * page, Di}), q = rand_f32_tiled({T, Hi * Di}), w = rand_f32({T, Hi}, 0.1f);
    if (fp8) be->hadamard_fp8_round(kp, Di), be->hadamard_fp8_round(q, Di);
    float us[2] = {0, 0}, topk_us = 0;
    std::string path[2];
    be->set_profile(true);
    for (int k = 0; k < 2; ++k) {
      be->set_gemm_mode(k == 0 ? cuda::GemmMode::Exact : cuda::GemmMode::Fast);
      std::vector<float> v;
      for (int r = 0; r < 6; ++r) {
        be->indexer_topk(q, w, kp, ab, Hi, Di, topk);
        if (r > 0) v.push_back(be->last_indexer_profile_us().first);
        if (k == 1) topk_us = be->last_indexer_profile_us().second;
      }
      std::sort(v.begin(), v.end());
      us[k] = v[v.size() / 2];
      path[k] = be->last_indexer_path();
    }
    be->set_profile(false);
    const double pairs = scored_pairs(ab), keys = double(B) * ctx;  // keys: distinct rows read (at least once)
    const double tflops = 2.0 * Hi * Di * pairs / (us[1] * 1e-6) / 1e12, gbs = keys * Di * 4 / (us[1] * 1e-6) / 1e9;
    std::printf("| %s | %lld | %d | %s | %.1f us | %.1f us | %.1fx | %.0f | %.0f (%.0f%%) | %.1f us |%s\n", label, (long long)T,
                ctx, fp8 ? "e4m3" : "fp32", us[0], us[1], us[0] / us[1], tflops, gbs, 100.0 * gbs / c.hbm_gbs, topk_us,
                path[0] == "simt" && path[1] == "tc" ? "" : " (paths differ from simt/tc!)");
    std::fflush(stdout);
  };
  for (int B : {1, 8, 32, 128})
    for (int ctx : {4096, 32768, 131072}) run("decode", B, ctx, 1, false);
  for (int ctx : {4096, 131072}) run("decode", 8, ctx, 1, true);
  for (bool fp8 : {false, true}) {
    run("prefill", 1, 8192, 8192, fp8);    // positions 0..8191
    run("prefill", 1, 16384, 8192, fp8);   // positions 8192..16383
  }
  be->set_gemm_mode(mode0);
}

// Indexer scores on IndexerMode::Fp8 values (64 heads x 128, top-k 2048), fast mode: the mma.sync kernel
// (tc) vs the FP8 wgmma kernel (pre-passes included), each pinned; fp32 pools holding the e4m3-rounded keys
// and packed FP8 pools (132-byte rows) of the same keys. Device time of the score kernels (profile mode,
// summed over the call's chunks), median of 5 calls; TFLOP/s useful: 2 x 64 x 128 per scored (query, key)
// pair. "top-k = tc": rows of the wgmma kernel's top-k equal to the tc kernel's. GPU_BENCH_INDEXER_QUICK=1:
// the 8K and 16K prefill rows over fp32 pools only (block shape experiments: DSSERVE_INDEXER_WGMMA_SHAPE).
void bench_indexer_wgmma(const Ceilings& c) {
  const bool quick = std::getenv("GPU_BENCH_INDEXER_QUICK") != nullptr;
  const int Hi = 64, Di = 128, topk = 2048, page = 64;
  const cuda::GemmMode mode0 = be->options().gemm;
  const KvFp8Layout KL = KvFp8Layout::indexer(Di);
  be->set_gemm_mode(cuda::GemmMode::Fast);
  std::printf("\n| indexer (e4m3 values) | queries | context | pool | tc scores | wgmma scores | speed-up | tc TFLOP/s "
              "| wgmma TFLOP/s | top-k = tc |\n|---|---|---|---|---|---|---|---|---|---|\n");
  auto run = [&](const char* label, int B, int ctx, int n_new) {
    const int pages = (ctx + page - 1) / page;
    const AttnBatch ab = shuffled_pages_batch(B, ctx, n_new, page);
    const int64_t T = int64_t(ab.pos_of_token.size()), rows = int64_t(B) * pages * page;
    Tensor kp = rand_f32_tiled({rows, Di}), q = rand_f32_tiled({T, Hi * Di}), w = rand_f32({T, Hi}, 0.1f);
    be->hadamard_fp8_round(kp, Di), be->hadamard_fp8_round(q, Di);
    Tensor kf = be->empty({rows, KL.bytes()}, DType::U8);
    std::vector<int32_t> slots(static_cast<size_t>(rows));
    std::iota(slots.begin(), slots.end(), 0);
    be->cache_write_fp8(kf, KL, kp, nullptr, slots);
    const double pairs = scored_pairs(ab);
    for (int packed = 0; packed < (quick ? 1 : 2); ++packed) {
      float us[2] = {0, 0};
      std::string path[2];
      Tensor idx[2];
      be->set_profile(true);
      for (int k = 0; k < 2; ++k) {
        be->set_indexer_kernel(k == 0 ? cuda::IndexerKernel::Tc : cuda::IndexerKernel::Wgmma);
        std::vector<float> v;
        for (int r = 0; r < 6; ++r) {
          Tensor i = be->indexer_topk(q, w, packed ? kf : kp, ab, Hi, Di, topk, true);
          if (r > 0) v.push_back(be->last_indexer_profile_us().first);
          if (r == 5) idx[k] = be->to_host(i);
        }
        std::sort(v.begin(), v.end());
        us[k] = v[v.size() / 2];
        path[k] = be->last_indexer_path();
      }
      be->set_profile(false);
      int64_t equal = 0;
      const int64_t K = idx[0].dim(1);
      for (int64_t t = 0; t < T; ++t)
        equal += std::equal(idx[0].data<int32_t>() + t * K, idx[0].data<int32_t>() + (t + 1) * K,
                            idx[1].data<int32_t>() + t * K);
      auto tf = [&](float u) { return 2.0 * Hi * Di * pairs / (u * 1e-6) / 1e12; };
      std::printf("| %s | %lld | %d | %s | %.1f us | %.1f us | %.2fx | %.0f | %.0f | %lld/%lld |%s\n", label,
                  (long long)T, ctx, packed ? "FP8" : "fp32", us[0], us[1], us[0] / us[1], tf(us[0]), tf(us[1]),
                  (long long)equal, (long long)T,
                  path[0] == "tc" && path[1] == "wgmma" ? "" : " (paths differ from tc/wgmma!)");
      std::fflush(stdout);
    }
  };
  if (!quick) run("prefill", 1, 4096, 4096);
  run("prefill", 1, 8192, 8192);
  run("prefill", 1, 16384, 16384);
  if (!quick) run("decode", 1, 4096, 1), run("decode", 32, 4096, 1);
  be->set_indexer_kernel(cuda::IndexerKernel::Auto);
  be->set_gemm_mode(mode0);
  (void)c;
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

// MoE experts at DeepSeek-V3.2's shapes (256 experts, top-8, H 7168, I 2048, FP8 with 128x128 scales) in
// the default fast mode, routing by moe_route on random logits: the grouped fp32 path (device-side lists,
// 4 launches), the per-expert path (routing read back; per used expert gather + 3 linear() + scatter)
// and the grouped FP8 path (device-side lists padded to 64-row tiles, wgmma FP8 GEMMs, 5 launches).
// Bytes = what must be read at least: the used experts' weights and scales. TFLOP/s counts the routed
// rows' FLOPs (2 x T x top_k x 3 x H x I), against a cuBLASLt FP8 dense GEMM pair of equal FLOPs timed in
// the same run. Checks: grouped vs per-expert in the exact mode up to 128 tokens (fp32 both), FP8 vs
// per-expert (both FP8 activations; per-expert's experts with <= 8 tokens take the fp32 GEMV: up to ~5%).
void bench_moe(const Ceilings& c, const std::vector<int>& Ts) {
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
              "grouped vs per-expert exact | fp8 vs per-expert rel diff |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
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
    if (T >= 8) {
      be->set_moe_path(cuda::MoePath::GroupedFp8);
      Tensor yf;
      t_f = time_ms([&](int) { yf = be->moe_experts(x, ids, wts, *set); }, reps);
      if (std::string(be->last_moe_path()) != "grouped-fp8") {
        std::printf("grouped-fp8 path not taken at T=%d (%s)\n", T, be->last_moe_path());
        ok_moe = false;
      }
      profile_once();
      const gpucheck::Err e = gpucheck::compare(be->to_host(yf), be->to_host(yp));
      fp8_diff = fmt::format("{:.1e}", e.rel);
      ok_moe &= std::isfinite(e.rel) && e.rel < 7e-2;  // per-expert: fp32 GEMV for experts of <= 8 tokens
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
    std::printf("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", T, n_used, us(t_g).c_str(),
                gbs(t_g).c_str(), us(t_p).c_str(), us(t_f).c_str(), gbs(t_f).c_str(),
                tf > 0 ? fmt::format("{:.0f}", tf).c_str() : "-", td > 0 ? fmt::format("{:.0f}", td).c_str() : "-",
                td > 0 && tf > 0 ? fmt::format("{:.0f}%", 100.0 * tf / td).c_str() : "-", ratio(t_p, t_f).c_str(),
                ratio(t_g, t_f).c_str(), exact.c_str(), fp8_diff.c_str());
    std::fflush(stdout);
  }
  std::printf("fast-mode Auto: grouped fp32 up to %lld tokens, grouped-fp8 above\n",
              (long long)be->moe_grouped_max_tokens());
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
    bool ok_kv = true;
    if (what == "all" || what == "kvfp8") ok_kv = gpubench::bench_kv_fp8(*be, c.hbm_gbs);
    if (what == "all" || what == "moe") {
      std::vector<int> Ts = {1, 8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 2048, 4096, 8192};
      if (const char* one = std::getenv("GPU_BENCH_MOE_T")) Ts = {std::atoi(one)};  // profiling
      bench_moe(c, Ts);
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
