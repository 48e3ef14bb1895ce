// Every op of the CUDA backend against the CPU backend (the fp32 reference) on fresh random inputs of
// several shapes: partial 128-blocks, rows that are no multiple of 128, several sequences over scattered
// pages. The GPU backend runs with NaN-poisoned allocations, so an output element that no kernel wrote
// shows up as NaN, and NaN never passes. Error = ||gpu - cpu|| / ||cpu|| unless stated.
// Bounds: 2e-5 for fp32 paths (summation order only), 5e-2 / 1e-2 for the FP8 / BF16 activations of the
// fast GEMM mode (e4m3 keeps 3 mantissa bits: ~2% per element).
// This file: dense ops; MoE in gpu_ops_check_moe.cpp, MLA and the indexer in gpu_ops_check_attention.cpp.
#include <algorithm>
#include <array>
#include <cstring>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <tuple>

#include "backend/cuda/pdl.cuh"
#include "ops_check_util.h"

namespace opcheck {

// ---------------------------------------------------------------- dense ops
void check_linear() {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{200, 320}, {96, 128}, {80, 128}, {32, 128}, {48, 128},
                                                           {160, 128}, {576, 7168}, {1024, 512}, {2112, 1536},
                                                           {72, 1040},   // K of 16.25 column steps, a partial row tile
                                                           {64, 7168}};  // the indexer's head weights (cublas-f32 at M 300)
  for (DType dt : {DType::F8_E4M3, DType::BF16, DType::F32})
    for (auto [N, K] : shapes) {
      if (dt == DType::F32 && N * K > 4'000'000) continue;
      BothLinear w(N, K, dt);
      for (int64_t M : {1, 3, 8, 9, 17, 32, 40, 300}) {
        Tensor x = randn({M, K});
        Tensor ref = g_cpu->linear(x, w.c);
        Tensor xg = up(x);
        for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
          g_gpu->set_gemm_mode(mode);
          Tensor y = g_gpu->linear(xg, w.g);
          const std::string path = g_gpu->last_gemm_path();
          const double tol = path == "lt-fp8" ? 5e-2 : path == "lt-bf16" ? 1e-2 : path == "gemv-tf32" ? 2e-3 : kTolF32;
          record("linear", fmt::format("{} M={} N={} K={} {}", dname(dt), M, N, K, path), cmp(y, ref).rel, tol);
          if (path == "lt-fp8") {  // against the same FP8 activations through our fp32 GEMM: rounding only
            g_gpu->set_emulate_fp8_lt(true);
            Tensor em = g_gpu->linear(xg, w.g);
            g_gpu->set_emulate_fp8_lt(false);
            record("linear lt-fp8 vs emulated", fmt::format("M={} N={} K={}", M, N, K), compare(down(y), down(em)).rel, 1e-3);
          }
        }
      }
    }
  g_gpu->set_gemm_mode(GemmMode::Exact);
  std::printf("cuBLASLt FP8 configuration: %s\n", g_gpu->fp8_lt_config().c_str());
}

// Every shape of the decode GEMV kernel (launch_gemv with each GemvTile gpu_bench compares, not only the
// default linear() takes) against the CPU linear: partial row tiles, K of 16.25 column steps, K splits.
void check_gemv_variants() {
  using cuda::GemvTile;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{200, 320}, {72, 1040}, {576, 7168}, {2112, 1536}};
  // Mode 16 (the fast mode's TF32-rounded x, one MMA): ~2^-12 relative per product, 3e-4 of the sums seen
  // in theory; bound 2e-3 (a wrong operand layout is off by ~100%).
  const std::vector<GemvTile> fp8 = {{1, 2}, {1, 4}, {2, 2}, {2, 4}, {2, 2, 2}, {2, 2, 18}, {4, 1, 2}, {4, 1, 18}};
  const std::vector<GemvTile> bf16 = {{1, 2}, {1, 4}, {2, 2}, {2, 2, 2}, {1, 2, 8}, {2, 2, 8}, {1, 2, 24}, {2, 2, 24}};
  Tensor counters = g_gpu->from_host(Tensor::zeros({cuda::kGemvMaxCounters}, DType::I32));
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (auto [N, K] : shapes) {
      BothLinear w(N, K, dt);
      const cuda::WeightRef r = CudaBackend::weight_ref(w.g);
      for (int64_t M : {1, 3, 8}) {
        Tensor x = randn({M, K});
        Tensor ref = g_cpu->linear(x, w.c), xg = up(x);
        for (const GemvTile& t : dt == DType::F8_E4M3 ? fp8 : bf16) {
          const int ky = cuda::gemv_ksplit(r, int(M), g_gpu->num_sms(), t);
          Tensor y = g_gpu->empty({M, N}, DType::F32), partial = g_gpu->empty({16 * M * N}, DType::F32);
          cuda::launch_gemv(xg.data<float>(), int(M), r, y.data<float>(), partial.data<float>(),
                            counters.data<int32_t>(), ky, g_gpu->stream(), t);
          record("gemv variant", fmt::format("{} M={} N={} K={} {}x{} m{} ky{}", dname(dt), M, N, K, t.R, t.U, t.mode, ky),
                 cmp(y, ref).rel, (t.mode & 16) ? 2e-3 : kTolF32);
        }
      }
    }
}

// linear_group (one GEMV launch for weights that read the same x) against the CPU linear of each weight:
// the model's q_a / kv_a / indexer-key group (576 rows: a partial 128-row scale block), partial row tiles
// and K of 16.25 column steps, BF16; above the GEMV sizes it must fall back to one linear() per weight.
void check_linear_group() {
  struct Case {
    DType dt;
    int64_t K;
    std::vector<int64_t> rows;
  };
  const std::vector<Case> cases = {{DType::F8_E4M3, 7168, {1536, 576, 128}},
                                   {DType::F8_E4M3, 1040, {72, 200, 16, 300}},
                                   {DType::BF16, 7168, {2048, 2048}},
                                   {DType::BF16, 1024, {64, 200}}};
  for (const Case& c : cases) {
    std::vector<std::unique_ptr<BothLinear>> ws;
    std::vector<const LinearWeight*> wg;
    for (int64_t n : c.rows) {
      ws.push_back(std::make_unique<BothLinear>(n, c.K, c.dt));
      wg.push_back(&ws.back()->g);
    }
    for (int64_t M : {1, 3, 8, 9, 40}) {
      Tensor x = randn({M, c.K});
      Tensor xg = up(x);
      for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
        g_gpu->set_gemm_mode(mode);
        std::vector<Tensor> ys = g_gpu->linear_group(xg, wg);
        const std::string path = g_gpu->last_gemm_path();
        const bool grouped = path.rfind("gemv-group", 0) == 0;
        // One launch wherever linear() takes the GEMV: up to 32 tokens exact, 8 fast.
        const bool want_grouped = M <= (mode == GemmMode::Fast ? 8 : 32);
        double worst = 0;
        for (size_t i = 0; i < ws.size(); ++i) worst = std::max(worst, cmp(ys[i], g_cpu->linear(x, ws[i]->c)).rel);
        const double tol = path == "gemv-group-tf32" || path == "gemv-tf32" ? 2e-3
                           : path == "lt-fp8"                               ? 5e-2
                           : path == "lt-bf16"                              ? 1e-2
                                                                            : kTolF32;
        record("linear_group", fmt::format("{} M={} K={} x{} {} ({})", dname(c.dt), M, c.K, ws.size(),
                                           mode == GemmMode::Fast ? "fast" : "exact", path),
               grouped == want_grouped ? worst : INFINITY, tol);
      }
    }
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

void check_norms_and_elementwise() {
  // 64, 512, 1536, 7168: the register-resident RMSNorm; 513 (odd) and 20000 (too wide): the loop form.
  for (int64_t n : {64, 512, 513, 1536, 7168, 20000}) {
    const int64_t T = n >= 7168 ? 7 : 33;
    Tensor x = randn({T, n}, 2.f, 0.3f), w = randn({n}, 1.f, 1.f), b = randn({n});
    record("rmsnorm", fmt::format("T={} n={}", T, n), cmp(g_gpu->rmsnorm(up(x), up(w), 1e-6f), g_cpu->rmsnorm(x, w, 1e-6f)).rel, kTolF32);
    record("layernorm", fmt::format("T={} n={}", T, n),
           cmp(g_gpu->layernorm(up(x), up(w), up(b), 1e-6f), g_cpu->layernorm(x, w, b, 1e-6f)).rel, kTolF32);
    Tensor res = randn({T, n}), res_c = Tensor::empty({T, n}, DType::F32);
    std::copy_n(res.f32(), res.numel(), res_c.f32());
    Tensor res_g = up(res);
    Tensor yg = g_gpu->add_rmsnorm(up(x), res_g, up(w), 1e-6f);
    Tensor yc = g_cpu->add_rmsnorm(x, res_c, w, 1e-6f);
    record("add_rmsnorm", fmt::format("T={} n={} (output)", T, n), cmp(yg, yc).rel, kTolF32);
    record("add_rmsnorm", fmt::format("T={} n={} (residual)", T, n), cmp(res_g, res_c).rel, 0.0);
    Tensor g = randn({T, n}, 3.f), u = randn({T, n});
    record("silu_mul", fmt::format("T={} n={}", T, n), cmp(g_gpu->silu_mul(up(g), up(u)), g_cpu->silu_mul(g, u)).rel, 1e-6);
    Tensor a = randn({T, n}), a_c = Tensor::empty({T, n}, DType::F32);
    std::copy_n(a.f32(), a.numel(), a_c.f32());
    Tensor a_g = up(a);
    g_gpu->add_inplace(a_g, up(g));
    g_cpu->add_inplace(a_c, g);
    g_gpu->scale_inplace(a_g, 0.37f);
    g_cpu->scale_inplace(a_c, 0.37f);
    record("add_inplace+scale", fmt::format("T={} n={}", T, n), cmp(a_g, a_c).rel, 0.0);
  }
  // embedding: fp32 and bf16 tables (the GPU keeps 2-D BF16 tables as BF16)
  const int64_t V = 1000, H = 384;
  std::vector<uint16_t> tb(size_t(V * H));
  for (auto& v : tb) v = f32_to_bf16(std::normal_distribution<float>(0.f, 1.f)(rng()));
  HostTensor ht{"emb", DType::BF16, {V, H}, tb.data()};
  Tensor tc = g_cpu->load_tensor_f32(ht), tg = g_gpu->load_tensor_f32(ht);
  std::vector<int32_t> ids;
  for (int i = 0; i < 77; ++i) ids.push_back(int32_t(rng()() % V));
  record("embedding", "BF16 table 1000x384, 77 ids", cmp(g_gpu->embedding(tg, ids), g_cpu->embedding(tc, ids)).rel, 0.0);
  Tensor tf = randn({V, H});
  record("embedding", "F32 table 1000x384, 77 ids", cmp(g_gpu->embedding(up(tf), ids), g_cpu->embedding(tf, ids)).rel, 0.0);
  // ids already on the device (a recorded draft chain), a vocabulary part starting at 300 (others: zero rows)
  Tensor idc = Tensor::empty({int64_t(ids.size())}, DType::I32);
  std::copy(ids.begin(), ids.end(), idc.data<int32_t>());
  record("embedding_ids", "BF16 table part [300, 1300), 77 device ids",
         cmp(g_gpu->embedding_ids(tg, g_gpu->from_host(idc), 300), g_cpu->embedding_part(tc, ids, 300)).rel, 0.0);
  // argmax_rows: the real vocabulary (float4 loads) and an odd one (scalar loads); ties (the lowest id wins),
  // a row of -inf, a NaN row and a +inf row (0).
  for (int64_t Vv : {int64_t(129280), int64_t(1001)}) {
    const int64_t R = 37;
    Tensor lg = randn({R, Vv}, 3.f);
    lg.f32()[3 * Vv + 17] = lg.f32()[3 * Vv + 900] = 50.f;
    for (int64_t i = 0; i < Vv; ++i) lg.f32()[5 * Vv + i] = -INFINITY;
    lg.f32()[6 * Vv + 11] = NAN;
    lg.f32()[7 * Vv + 12] = INFINITY;
    Tensor want = Tensor::zeros({R}, DType::I32), got = g_gpu->alloc({R}, DType::I32);
    g_cpu->argmax_rows(lg, want);
    g_gpu->argmax_rows(up(lg), got);
    const Tensor back = g_gpu->to_host_f32(got);
    int wrong = 0;
    for (int64_t r = 0; r < R; ++r) wrong += int32_t(back.f32()[r]) != want.data<int32_t>()[r];
    const bool specials = want.data<int32_t>()[3] == 17 && want.data<int32_t>()[5] == 0 &&
                          want.data<int32_t>()[6] == 0 && want.data<int32_t>()[7] == 0;
    record("argmax_rows", fmt::format("{} rows x {} (ties, -inf, NaN, +inf rows)", R, Vv),
           double(wrong) + (specials ? 0.0 : 1.0), 0.0);
  }
  // rescore_topk (the FP8 draft head's candidates against the exact head): the real vocabulary with a BF16
  // head, an odd one with an F32 head; ties at the top (the lower id wins), NaNs, a row with two finite
  // entries. The kept ids must be the CPU's; their values equal up to the fp32 sums' order.
  for (auto [Vv, Hh, bf16] : {std::tuple<int64_t, int64_t, bool>{129280, 1024, true}, {1001, 7168, false}}) {
    const int64_t R = 37;
    const int k = backend::Backend::kMaxRescoreCandidates;
    std::vector<uint16_t> wb;
    Tensor wf;
    if (bf16) {
      wb.resize(size_t(Vv * Hh));
      for (auto& v : wb) v = f32_to_bf16(std::normal_distribution<float>(0.f, 0.05f)(rng()));
    } else {
      wf = randn({Vv, Hh}, 0.05f);
    }
    HostTensor hw{"head", bf16 ? DType::BF16 : DType::F32, {Vv, Hh}, bf16 ? (const void*)wb.data() : wf.raw()};
    const LinearWeight wc = g_cpu->load_linear(hw, nullptr), wg = g_gpu->load_linear(hw, nullptr);
    Tensor x = randn({R, Hh});
    Tensor lg = randn({R, Vv}, 3.f);
    for (int64_t i : {int64_t(17), int64_t(900), int64_t(5)}) lg.f32()[3 * Vv + i] = 50.f;
    lg.f32()[4 * Vv + 11] = NAN;
    for (int64_t i = 0; i < Vv; ++i) lg.f32()[6 * Vv + i] = NAN;
    lg.f32()[6 * Vv + 40] = 1.f, lg.f32()[6 * Vv + 7] = -INFINITY;
    Tensor want = Tensor::empty(lg.shape(), DType::F32);
    std::copy_n(lg.f32(), lg.numel(), want.f32());
    Tensor got = up(lg);
    g_cpu->rescore_topk(want, x, wc, k);
    g_gpu->rescore_topk(got, up(x), wg, k);
    const Tensor back = g_gpu->to_host_f32(got);
    int wrong = 0;
    double err = 0, scale = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      const float a = want.f32()[i], b = back.f32()[i];
      if ((a == -INFINITY) != (b == -INFINITY)) ++wrong;
      else if (a != -INFINITY) err = std::max(err, double(std::fabs(a - b))), scale = std::max(scale, double(std::fabs(a)));
    }
    const bool specials = want.f32()[3 * Vv + 5] != -INFINITY && want.f32()[6 * Vv + 40] != -INFINITY &&
                          want.f32()[6 * Vv + 7] != -INFINITY && want.f32()[4 * Vv + 11] == -INFINITY;
    record("rescore_topk", fmt::format("{} rows x {}, head {} x {} (ties, NaN, a two-entry row): kept ids", R, Vv,
                                       bf16 ? "BF16" : "F32", Hh),
           double(wrong) + (specials ? 0.0 : 1.0), 0.0);
    record("rescore_topk", fmt::format("{} rows x {}, head {} x {}: rescored values", R, Vv, bf16 ? "BF16" : "F32", Hh),
           scale > 0 ? err / scale : 1.0, 1e-5);
  }
  // gather_rows_to_host / scatter_rows_from_host (PD's KV rows): rows of 16-byte, 4-byte and odd sizes, in
  // a shuffled order with repeats on gather; > 16 MB so that the GPU moves them in several chunks; host
  // memory pageable (staged) and page-locked (alloc_host_bytes: copied straight). Wrong bytes counted
  // against the CPU backend's copies.
  for (bool locked : {false, true})
    for (int64_t rb : {int64_t(1152), int64_t(132), int64_t(7)}) {
      const int64_t N = rb == 1152 ? 20000 : 3000;
      auto host = [&](size_t n) { return locked ? g_gpu->alloc_host_bytes(n) : HostBytes::from_vector(std::vector<uint8_t>(n)); };
      const char* kind = locked ? "page-locked" : "pageable";
      Tensor pc = Tensor::empty({N, rb}, DType::U8);
      for (int64_t i = 0; i < N * rb; ++i) pc.data<uint8_t>()[i] = uint8_t(rng()());
      Tensor pg = g_gpu->from_host(pc);
      std::vector<int32_t> rows;
      for (int64_t i = 0; i < N * 3 / 4; ++i) rows.push_back(int32_t(rng()() % uint32_t(N)));
      std::vector<uint8_t> want(rows.size() * size_t(rb));
      HostBytes got = host(want.size());
      g_cpu->gather_rows_to_host(want.data(), pc, rows);
      g_gpu->gather_rows_to_host(got.data(), pg, rows);
      size_t wrong = 0;
      for (size_t i = 0; i < want.size(); ++i) wrong += want[i] != got.data()[i];
      record("gather_rows_to_host", fmt::format("{} of {} rows of {} bytes, {}", rows.size(), N, rb, kind), double(wrong), 0.0);
      // Scatter to distinct rows (a page table's), then the whole pool compared.
      std::vector<int32_t> dst(static_cast<size_t>(N)), all(static_cast<size_t>(N));
      for (int64_t i = 0; i < N; ++i) dst[size_t(i)] = all[size_t(i)] = int32_t(i);
      std::shuffle(dst.begin(), dst.end(), rng());
      dst.resize(size_t(N / 2));
      HostBytes in = host(dst.size() * size_t(rb));
      for (size_t i = 0; i < in.size(); ++i) in.data()[i] = uint8_t(rng()());
      g_cpu->scatter_rows_from_host(pc, dst, in.data());
      g_gpu->scatter_rows_from_host(pg, dst, in.data());
      std::vector<uint8_t> pool_g(size_t(N * rb));
      g_gpu->gather_rows_to_host(pool_g.data(), pg, all);
      wrong = 0;
      for (size_t i = 0; i < pool_g.size(); ++i) wrong += pc.data<uint8_t>()[i] != pool_g[i];
      record("scatter_rows_from_host", fmt::format("{} of {} rows of {} bytes, {}", dst.size(), N, rb, kind), double(wrong), 0.0);
    }
}

// Backend::branch on a second stream (backend/cuda/cuda_branch.cpp). First the caching allocator's hold: a
// block freed while a branch is open is not handed out again until the join. Then a chain where every
// step opens a branch (a norm, the decode GEMV on the branch lane's counters, a scale) reading the main
// line's tensor, while the main line runs its own GEMV and frees temporaries inside the window, then joins
// and adds the two: bitwise the result of the same chain with branches in order, in both GEMM modes.
void check_branches() {
  auto al = std::make_shared<cuda::DeviceAllocator>();
  void* p1 = al->allocate(1000)->ptr;  // back in the cache at once
  auto s2 = al->allocate(1000);
  const bool reused = s2->ptr == p1;
  al->hold_frees(true);
  s2.reset();
  auto s3 = al->allocate(1000);
  const bool held = s3->ptr != p1;
  al->hold_frees(false);
  auto s4 = al->allocate(1000);
  const bool back = s4->ptr == p1;
  record("allocator holds frees", "a block freed while holding is not reused until the hold ends",
         reused && held && back ? 0.0 : 1.0, 0.0);

  const int64_t T = 3, n = 7168;
  Tensor x0 = randn({T, n}), r0 = randn({T, n}), w = randn({n}, 0.2f, 1.f);
  BothLinear main_w(n, n, DType::F8_E4M3), side_w(n, n, DType::F8_E4M3);
  for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
    g_gpu->set_gemm_mode(mode);
    std::string path;
    auto chain = [&](bool overlap) {
      g_gpu->set_overlap(overlap);
      Tensor x = up(x0), wg = up(w);
      for (int k = 0; k < 40; ++k) {
        Tensor side;
        g_gpu->branch([&] {
          Tensor t = g_gpu->linear(g_gpu->rmsnorm(x, wg, 1e-6f), side_w.g);
          g_gpu->scale_inplace(t, 0.5f);
          side = t;
        }, T);
        Tensor m = g_gpu->linear(g_gpu->rmsnorm(x, wg, 1e-6f), main_w.g);
        {
          Tensor tmp = g_gpu->silu_mul(m, m);  // freed inside the window
          m = g_gpu->rmsnorm(tmp, wg, 1e-6f);
        }
        x = Tensor();  // and the branch's input: held too
        g_gpu->join_branch();
        g_gpu->add_inplace(m, side);
        x = m;
      }
      path += g_gpu->last_branch_path();
      g_gpu->set_overlap(false);
      return g_gpu->to_host_f32(x);
    };
    const Tensor off = chain(false), on = chain(true);
    const bool same = std::memcmp(on.f32(), off.f32(), size_t(on.numel()) * 4) == 0;
    record("branches on a second stream", fmt::format("{} mode: 40 branches beside a GEMV chain, bitwise vs in order "
                                                      "({})", mode == GemmMode::Exact ? "exact" : "fast", path),
           same && path == "inlinestream" ? 0.0 : 1.0, 0.0);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
  // A step wider than CudaOptions::branch_max_tokens runs its branch in order, overlap on or not.
  g_gpu->set_overlap(true);
  std::string wide;
  for (int64_t tokens : {g_gpu->options().branch_max_tokens, g_gpu->options().branch_max_tokens + 1}) {
    g_gpu->branch([] {}, tokens);
    g_gpu->join_branch();
    wide += std::string(g_gpu->last_branch_path()) + " ";
  }
  g_gpu->set_overlap(false);
  record("branches on a second stream", fmt::format("at the token limit and one above: {}", wide),
         wide == "stream inline " ? 0.0 : 1.0, 0.0);
}

// Programmatic dependent launch (backend/cuda/pdl.cuh): a long chain of small dependent kernels (norms,
// elementwise, rope, the decode GEMV), each reading what the one before wrote, gives bitwise the same
// result with PDL on as off. A kernel launched as a dependent that touched memory before its
// pdl_prologue() would read stale inputs here (the next kernel starts while the previous still runs).
void check_pdl_chain() {
  const bool was = cuda::pdl_enabled();
  RopeTable table;
  for (int i = 0; i < 32; ++i) table.inv_freq.push_back(std::pow(10000.f, -float(i) / 32.f));
  const int64_t T = 3, n = 7168, H = 8, D = n / H;
  std::vector<int32_t> pos = {5, 900, 70000};
  Tensor x0 = randn({T, n}), r0 = randn({T, n}), w = randn({n}, 0.2f, 1.f), u = randn({T, n}, 0.5f, 1.f);
  BothLinear wlin(n, n, DType::F8_E4M3);  // the decode GEMV (FP8 weights, M = 3) inside the chain
  auto chain = [&](bool pdl) {
    cuda::pdl_flag() = pdl;
    Tensor x = up(x0), r = up(r0), wg = up(w), ug = up(u);
    for (int k = 0; k < 60; ++k) {
      x = g_gpu->add_rmsnorm(x, r, wg, 1e-6f);
      g_gpu->rope(x, 0, D, H, 64, pos, table, RopeLayout::Interleaved);
      x = g_gpu->silu_mul(x, ug);
      g_gpu->scale_inplace(x, 1.5f);
      if (k % 10 == 0) x = g_gpu->linear(x, wlin.g);
      x = g_gpu->rmsnorm(x, wg, 1e-6f);
    }
    return g_gpu->to_host_f32(x);
  };
  const Tensor on = chain(true), off = chain(false);
  cuda::pdl_flag() = was;
  const bool same = std::memcmp(on.f32(), off.f32(), size_t(on.numel()) * 4) == 0;
  record("pdl chain", fmt::format("360 dependent launches, PDL on vs off (was {})", was ? "on" : "off"),
         same ? 0.0 : 1.0, 0.0);
}

void check_rope_copy_cache() {
  RopeTable table;
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  for (int i = 0; i < 32; ++i) table.inv_freq.push_back(std::pow(10000.f, -float(i) / 32.f) * (0.25f + 0.75f * ud(rng())));
  for (float af : {1.0f, 0.7f}) {
    table.attention_factor = af;
    const int64_t T = 37, H = 5, Dn = 16, Dr = 64, Dq = Dn + Dr;
    std::vector<int32_t> pos;
    for (int t = 0; t < T; ++t) pos.push_back(int32_t(rng()() % 200000));
    Tensor x = randn({T, H * Dq}), xc = Tensor::empty({T, H * Dq}, DType::F32);
    std::copy_n(x.f32(), x.numel(), xc.f32());
    Tensor xg = up(x);
    g_gpu->rope(xg, Dn, Dq, H, Dr, pos, table, RopeLayout::Interleaved);
    g_cpu->rope(xc, Dn, Dq, H, Dr, pos, table, RopeLayout::Interleaved);
    record("rope", fmt::format("interleaved T={} heads={} af={}", T, H, af), cmp(xg, xc).maxrel, 1e-5);
    const int64_t Hi = 8, Di = 128;
    Tensor y = randn({T, Hi * Di}), yc = Tensor::empty({T, Hi * Di}, DType::F32);
    std::copy_n(y.f32(), y.numel(), yc.f32());
    Tensor yg = up(y);
    g_gpu->rope(yg, 0, Di, Hi, Dr, pos, table, RopeLayout::HalfSplit);
    g_cpu->rope(yc, 0, Di, Hi, Dr, pos, table, RopeLayout::HalfSplit);
    record("rope", fmt::format("half-split T={} heads={} af={}", T, Hi, af), cmp(yg, yc).maxrel, 1e-5);
  }
  // copy_cols
  Tensor src = randn({19, 100}), dst = randn({19, 70});
  Tensor dc = Tensor::empty({19, 70}, DType::F32);
  std::copy_n(dst.f32(), dst.numel(), dc.f32());
  Tensor dg = up(dst);
  g_gpu->copy_cols(dg, 5, up(src), 33, 41);
  g_cpu->copy_cols(dc, 5, src, 33, 41);
  record("copy_cols", "19 rows, 41 of 100 -> 70", cmp(dg, dc).rel, 0.0);
  // Wider words where addresses, pitches and width allow (16-byte: 64 of 576 at column 512, the rope key),
  // and more rows than one grid's y extent (70,000: chunks of 65,535).
  for (auto [rows, sw, dw, sc, dcol, n] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>{37, 576, 64, 512, 0, 64},
                                           {70000, 12, 8, 4, 0, 8}, {5, 7, 7, 1, 2, 3}}) {
    Tensor s2 = randn({rows, sw}), d2 = randn({rows, dw}), d2c = Tensor::empty({rows, dw}, DType::F32);
    std::copy_n(d2.f32(), d2.numel(), d2c.f32());
    Tensor d2g = up(d2);
    g_gpu->copy_cols(d2g, dcol, up(s2), sc, n);
    g_cpu->copy_cols(d2c, dcol, s2, sc, n);
    record("copy_cols", fmt::format("{} rows, {} of {} at {} -> {} at {}", rows, n, sw, sc, dw, dcol), cmp(d2g, d2c).rel, 0.0);
  }
  // cache_write / cache_gather with scattered slots
  const int64_t R = 1000, D = 576;
  Tensor pool = randn({R, D}), pc = Tensor::empty({R, D}, DType::F32);
  std::copy_n(pool.f32(), pool.numel(), pc.f32());
  Tensor pg = up(pool);
  std::vector<int32_t> all(R);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng());
  std::vector<int32_t> slots(all.begin(), all.begin() + 53);
  Tensor rows = randn({53, 64});
  g_gpu->cache_write(pg, 512, up(rows), slots);
  g_cpu->cache_write(pc, 512, rows, slots);
  record("cache_write", "53 scattered rows into cols 512..575", cmp(pg, pc).rel, 0.0);
  std::vector<int32_t> gs(all.begin() + 20, all.begin() + 120);
  record("cache_gather", "100 scattered rows", cmp(g_gpu->cache_gather(pg, gs), g_cpu->cache_gather(pc, gs)).rel, 0.0);
  // The same into a BF16 pool (--kv-cache-dtype bf16): rows rounded to nearest even on the way in.
  auto [pool_b, pool_w] = bf16_pair(pool);
  Tensor pgb = up(pool_b), pcw = Tensor::empty({R, D}, DType::F32);
  std::copy_n(pool_w.f32(), pool_w.numel(), pcw.f32());
  g_gpu->cache_write(pgb, 512, up(rows), slots);
  g_cpu->cache_write(pcw, 512, bf16_pair(rows).second, slots);
  record("cache_write", "BF16 pool, 53 scattered rows into cols 512..575", cmp(g_gpu->cache_gather(pgb, all),
         g_cpu->cache_gather(pcw, all)).rel, 0.0);
  record("cache_gather", "BF16 pool, 100 scattered rows", cmp(g_gpu->cache_gather(pgb, gs), g_cpu->cache_gather(pcw, gs)).rel,
         0.0);
}

}  // namespace opcheck

using namespace opcheck;

// `gpu_ops_check dense`: the dense ops only (norms, elementwise, rope, cache, linear, the GEMV's forms);
// `gpu_ops_check attention`: MLA, the indexer and the FP8 KV pools only; `gpu_ops_check mla`: the absorbed
// MLA kernels only; `gpu_ops_check mha`: the dense causal MHA prefill only; `gpu_ops_check moe`: routing and
// the three expert paths only; `gpu_ops_check fused`: the fused attention-block kernels only (also part of
// dense); `gpu_ops_check indexer`: the indexer's kernels only (SIMT, tc, wgmma); `gpu_ops_check
// indexer-wgmma`: the FP8 wgmma indexer kernel only.
int main(int argc, char** argv) {
  try {
    const std::string only = argc < 2 ? "" : argv[1];
    const bool all = only != "dense" && only != "attention" && only != "mha" && only != "moe" && only != "mla" &&
                     only != "fused" && only != "indexer" && only != "indexer-wgmma";
    g_cpu = make_cpu_backend(0);
    cuda::CudaOptions o;
    o.poison = true;
    o.gemm = GemmMode::Exact;
    g_gpu = cuda::make_cuda_backend(o);
    if (only == "mla") {
      check_mla();
      check_mla_wgmma();
      check_bf16_absorb();
      return summary("gpu_ops_check") ? 1 : 0;
    }
    if (only == "indexer" || only == "indexer-wgmma") {
      if (only == "indexer") check_indexer(), check_indexer_tc();
      check_indexer_wgmma();
      return summary("gpu_ops_check") ? 1 : 0;
    }
    if (only == "fused") {
      check_fused_kv();
      return summary("gpu_ops_check") ? 1 : 0;
    }
    if (only == "mha") {
      check_mha();
      return summary("gpu_ops_check") ? 1 : 0;
    }
    if (only == "moe") {
      check_moe();
      check_moe_grouped();
      check_moe_fp8();
      return summary("gpu_ops_check") ? 1 : 0;
    }
    if (only != "attention") {
      check_pdl_chain();
      check_branches();
      check_norms_and_elementwise();
      check_rope_copy_cache();
      check_fused_kv();
      check_linear();
      check_gemv_variants();
      check_linear_group();
    }
    if (only != "dense") {
      check_mla();
      check_mla_wgmma();
      check_bf16_absorb();
      check_mha();
      check_indexer();
      check_indexer_tc();
      check_indexer_wgmma();
      check_kv_fp8();
    }
    if (all) {
      check_moe();
      check_moe_grouped();
      check_moe_fp8();
    }
    const auto st = g_gpu->memory_stats();
    std::printf("device memory: peak in use %.1f MiB, %zu cudaMalloc calls by the caching allocator\n",
                double(st.peak_in_use) / (1 << 20), st.cuda_mallocs);
    return summary("gpu_ops_check") ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_ops_check: error: %s\n", e.what());
    return 2;
  }
}
