// Every op of the CUDA backend against the CPU backend (the fp32 reference) on fresh random inputs of
// several shapes: partial 128-blocks, rows that are no multiple of 128, several sequences over scattered
// pages. The GPU backend runs with NaN-poisoned allocations, so an output element that no kernel wrote
// shows up as NaN, and NaN never passes. Error = ||gpu - cpu|| / ||cpu|| unless stated.
// Bounds: 2e-5 for fp32 paths (summation order only), 5e-2 / 1e-2 for the FP8 / BF16 activations of the
// fast GEMM mode (e4m3 keeps 3 mantissa bits: ~2% per element).
#include <fmt/format.h>

#include <array>
#include <map>
#include <tuple>
#include <numeric>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "check_util.h"

using namespace ds;
using namespace ds::backend;
using namespace gpucheck;
using cuda::CudaBackend;
using cuda::GemmMode;

namespace {
constexpr double kTolF32 = 2e-5;

std::unique_ptr<Backend> g_cpu;
std::unique_ptr<CudaBackend> g_gpu;

Tensor up(const Tensor& t) { return g_gpu->from_host(t); }
// A host F32 tensor rounded to bf16: the BF16 tensor and its values widened back to F32 (the CPU reference).
std::pair<Tensor, Tensor> bf16_pair(const Tensor& f) {
  Tensor b = Tensor::empty(f.shape(), DType::BF16), w = Tensor::empty(f.shape(), DType::F32);
  for (int64_t i = 0; i < f.numel(); ++i) {
    b.data<uint16_t>()[i] = f32_to_bf16(f.f32()[i]);
    w.f32()[i] = bf16_to_f32(b.data<uint16_t>()[i]);
  }
  return {b, w};
}
Tensor down(const Tensor& t) { return g_gpu->to_host_f32(t); }
Err cmp(const Tensor& gpu, const Tensor& cpu) { return compare(down(gpu), cpu); }

// A random linear weight in a checkpoint dtype; the host buffers live as long as this object.
struct HostLinear {
  std::vector<uint8_t> q;
  std::vector<uint16_t> bf;
  std::vector<float> f, s;
  HostTensor w, scale;
  bool fp8 = false;
  HostLinear(int64_t N, int64_t K, DType dt, float wscale = 1.0f) {
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<float> ud(0.5f, 2.0f);
    const float std_w = wscale / std::sqrt(float(K));
    w = HostTensor{"w", dt, {N, K}, nullptr};
    if (dt == DType::F8_E4M3) {
      fp8 = true;
      q.resize(size_t(N * K));
      for (auto& v : q) v = f32_to_fp8e4m3(nd(rng()) * 64.f);
      const int64_t nb = (N + 127) / 128, kb = (K + 127) / 128;
      s.resize(size_t(nb * kb));
      for (auto& v : s) v = ud(rng()) * std_w / 64.f;
      w.data = q.data();
      scale = HostTensor{"s", DType::F32, {nb, kb}, s.data()};
    } else if (dt == DType::BF16) {
      bf.resize(size_t(N * K));
      for (auto& v : bf) v = f32_to_bf16(nd(rng()) * std_w);
      w.data = bf.data();
    } else {
      f.resize(size_t(N * K));
      for (auto& v : f) v = nd(rng()) * std_w;
      w.data = f.data();
    }
  }
  const HostTensor* sp() const { return fp8 ? &scale : nullptr; }
};

struct BothLinear {
  HostLinear h;
  LinearWeight c, g;
  BothLinear(int64_t N, int64_t K, DType dt, float wscale = 1.0f) : h(N, K, dt, wscale) {
    c = g_cpu->load_linear(h.w, h.sp());
    g = g_gpu->load_linear(h.w, h.sp());
  }
};

std::string dname(DType t) { return std::string(dtype_name(t)); }

// ---------------------------------------------------------------- dense ops
void check_linear() {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{200, 320}, {96, 128}, {80, 128}, {32, 128}, {48, 128},
                                                           {160, 128}, {576, 7168}, {1024, 512}, {2112, 1536}};
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
          const double tol = path == "lt-fp8" ? 5e-2 : path == "lt-bf16" ? 1e-2 : kTolF32;
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

// ---------------------------------------------------------------- attention
struct Scenario {
  AttnBatch ab;
  std::vector<int32_t> ctx, key_row0;
  Tensor index;  // host I32 [T, K]
  int64_t T = 0, K = 0, rows = 0;
};

// Sequences with contexts ctx[s], the last n_new[s] positions being this step's queries; pages shuffled
// over a pool with spare pages. sparse_k > 0: each query attends to a random ascending subset of
// min(sparse_k, p + 1) earlier positions; else to every position 0..p.
// min_width: index rows at least this wide (-1 padded, as a graph-captured decode step passes them).
Scenario make_scenario(const std::vector<int32_t>& ctx, const std::vector<int32_t>& n_new, int32_t page_size,
                       int64_t sparse_k, int64_t min_width = 0) {
  Scenario sc;
  sc.ctx = ctx;
  sc.ab.page_size = page_size;
  int64_t pages = 0;
  for (int32_t c : ctx) pages += (c + page_size - 1) / page_size;
  const int64_t pool_pages = pages + 7;
  std::vector<int32_t> perm(static_cast<size_t>(pool_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng());
  int64_t next = 0, row0 = 0;
  for (size_t s = 0; s < ctx.size(); ++s) {
    std::vector<int32_t> pt;
    for (int32_t i = 0; i < (ctx[s] + page_size - 1) / page_size; ++i) pt.push_back(perm[size_t(next++)]);
    sc.ab.page_tables.push_back(pt);
    sc.key_row0.push_back(int32_t(row0));
    row0 += ctx[s];
    for (int32_t p = ctx[s] - n_new[s]; p < ctx[s]; ++p) {
      sc.ab.seq_of_token.push_back(int32_t(s));
      sc.ab.pos_of_token.push_back(p);
    }
  }
  sc.rows = pool_pages * page_size;
  sc.T = int64_t(sc.ab.pos_of_token.size());
  int64_t K = 0;
  for (int32_t p : sc.ab.pos_of_token) K = std::max<int64_t>(K, sparse_k > 0 ? std::min<int64_t>(sparse_k, p + 1) : p + 1);
  K = std::max(K, min_width);
  sc.K = K;
  sc.index = Tensor::empty({sc.T, K}, DType::I32);
  for (int64_t t = 0; t < sc.T; ++t) {
    const int32_t p = sc.ab.pos_of_token[size_t(t)];
    int32_t* row = sc.index.i32() + t * K;
    std::fill(row, row + K, -1);
    if (sparse_k > 0 && p + 1 > sparse_k) {
      std::vector<int32_t> all(size_t(p + 1));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng());
      all.resize(size_t(sparse_k));
      std::sort(all.begin(), all.end());
      std::copy(all.begin(), all.end(), row);
    } else {
      std::iota(row, row + p + 1, 0);
    }
  }
  return sc;
}

void check_mla() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t sparse_k, H, Dl, Dr;
    int64_t width = 0;       // index rows padded with -1 to this width
    bool dead_row = false;   // the last query's whole list is -1 (output 0)
  };
  const std::vector<Case> cases = {
      {"tiny, 3 seqs prefill+decode", {40, 23, 64}, {13, 1, 64}, 4, 0, 4, 64, 16},
      {"decode 1 token, ctx 3000 sparse 2048", {3000}, {1}, 64, 2048, 128, 512, 64},
      {"decode 4 seqs, ctx 100..5000, sparse 2048", {100, 2048, 2049, 5000}, {1, 1, 1, 1}, 16, 2048, 128, 512, 64},
      {"chunk 33 + decodes, causal", {300, 77, 129}, {33, 1, 1}, 16, 0, 16, 512, 64},
      {"prefill 130 tokens, sparse 64", {130}, {130}, 1, 64, 20, 512, 64},
      // Shapes aimed at the tensor-core kernel (64 heads x 32-key tiles per block).
      {"decode ctx 5/40/1000, width 2048", {5, 40, 1000}, {1, 1, 1}, 64, 2048, 128, 512, 64, 2048},
      {"decode ctx 7/20/300 width 2048, dead row", {7, 20, 300}, {1, 1, 1}, 16, 2048, 100, 512, 64, 2048, true},
      {"decode K < one tile (ctx 7, 20)", {7, 20}, {1, 1}, 4, 2048, 64, 512, 64},
      {"demo widths, 6 seqs ctx 33..2100", {33, 64, 65, 500, 1999, 2100}, {1, 1, 1, 1, 1, 1}, 64, 2048, 4, 256, 64},
      {"demo widths, chunk 40 + decode", {700, 90}, {40, 1}, 16, 512, 36, 256, 64},
      {"prefill 80 of 600 (no split), sparse 512", {600}, {80}, 64, 512, 100, 512, 64},
      {"3 seqs x 30 tokens, sparse 100, 65 heads", {97, 150, 64}, {30, 30, 30}, 8, 100, 65, 512, 64},
  };
  constexpr double kTolTc = 1e-4;  // BF16 MMAs on two-part (hi + lo) queries and weights: ~1e-6 expected
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, c.sparse_k, c.width);
    if (c.dead_row) std::fill(sc.index.i32() + (sc.T - 1) * sc.K, sc.index.i32() + sc.T * sc.K, -1);
    const int64_t D = c.Dl + c.Dr;
    Tensor pool = randn({sc.rows, D}), q = randn({sc.T, c.H, D}, 0.3f);
    const float scale = 1.0f / std::sqrt(float(D));
    const std::string what = fmt::format("{} (T={} H={} K={})", c.name, sc.T, c.H, sc.K);
    Tensor ref = g_cpu->mla_attention_absorbed(q, pool, sc.index, sc.ab, c.Dl, scale);
    Tensor qg = up(q), ig = up(sc.index), pg = up(pool);
    record("mla_attention_absorbed", what, cmp(g_gpu->mla_attention_absorbed(qg, pg, ig, sc.ab, c.Dl, scale), ref).rel,
           kTolF32);
    // A BF16 latent pool (the serving default on CUDA) against the CPU on the same rounded values.
    auto [pb, pw] = bf16_pair(pool);
    Tensor pbg = up(pb);
    Tensor ref_b = g_cpu->mla_attention_absorbed(q, pw, sc.index, sc.ab, c.Dl, scale);
    record("mla_attention_absorbed", "BF16 pool, " + what,
           cmp(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale), ref_b).rel, kTolF32);
    // The fast GEMM mode: the tensor-core kernel for BF16 pools of supported widths, else the SIMT one.
    g_gpu->set_gemm_mode(GemmMode::Fast);
    const bool want_tc = cuda::mla_tc_supported(int(D), int(c.Dl));
    Tensor o1 = g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale);
    const std::string path = g_gpu->last_mla_path();
    record("mla_attention_absorbed fast", fmt::format("BF16 pool, {}: {}", path, what),
           path == (want_tc ? "tc" : "simt") ? cmp(o1, ref_b).rel : INFINITY, want_tc ? kTolTc : kTolF32);
    if (want_tc) {  // the same inputs again: bitwise the same (a race shows up as a moving result)
      const Tensor h1 = down(o1), h2 = down(g_gpu->mla_attention_absorbed(qg, pbg, ig, sc.ab, c.Dl, scale));
      const bool same = std::equal(h1.f32(), h1.f32() + h1.numel(), h2.f32());
      record("mla_attention_absorbed fast", "tc repeat bitwise, " + what, same ? 0.0 : 1.0, 0.0);
    }
    Tensor o32 = g_gpu->mla_attention_absorbed(qg, pg, ig, sc.ab, c.Dl, scale);
    record("mla_attention_absorbed fast", fmt::format("fp32 pool, {}: {}", g_gpu->last_mla_path(), what),
           std::string(g_gpu->last_mla_path()) == "simt" ? cmp(o32, ref).rel : INFINITY, kTolF32);
    g_gpu->set_gemm_mode(GemmMode::Exact);
    if (c.H <= 20) {  // the expanded form over per-head K/V
      const int64_t Nk = std::accumulate(c.ctx.begin(), c.ctx.end(), int64_t(0)), Dv = 48;
      Tensor k = randn({Nk, c.H, D}, 0.5f), v = randn({Nk, c.H, Dv});
      Tensor eref = g_cpu->attention_expanded(q, k, v, sc.index, sc.ab, sc.key_row0, scale);
      Tensor eout = g_gpu->attention_expanded(up(q), up(k), up(v), up(sc.index), sc.ab, sc.key_row0, scale);
      record("attention_expanded", what, cmp(eout, eref).rel, kTolF32);
    }
  }
  // causal_index
  Scenario sc = make_scenario({40, 23, 64}, {13, 1, 64}, 4, 0);
  Tensor ci = g_gpu->to_host(g_gpu->causal_index(sc.ab)), cc = g_cpu->causal_index(sc.ab);
  const bool same = ci.numel() == cc.numel() && std::equal(cc.i32(), cc.i32() + cc.numel(), ci.data<int32_t>());
  record("causal_index", "3 seqs, 78 tokens", same ? 0.0 : 1.0, 0.0);
  // weight absorption
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (auto [H, Dn, Dv, Dl] : std::vector<std::array<int64_t, 4>>{{4, 32, 32, 64}, {16, 128, 128, 512}})
      for (int64_t T : {1, 5, 37}) {
        BothLinear kvb(H * (Dn + Dv), Dl, dt);
        const int64_t Dr = 64;
        Tensor q = randn({T, H * (Dn + Dr)});
        record("mla_absorb_q", fmt::format("{} T={} H={} Dn={} Dl={}", dname(dt), T, H, Dn, Dl),
               cmp(g_gpu->mla_absorb_q(up(q), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_q(q, kvb.c, H, Dn, Dv)).rel, kTolF32);
        Tensor o = randn({T, H, Dl});
        record("mla_absorb_out", fmt::format("{} T={} H={} Dv={} Dl={}", dname(dt), T, H, Dv, Dl),
               cmp(g_gpu->mla_absorb_out(up(o), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_out(o, kvb.c, H, Dn, Dv)).rel,
               kTolF32);
      }
  // The fast mode from 64 tokens: kv_b dequantised + cuBLAS strided-batched TF32 (activations rounded to
  // TF32, 2^-11: about 5e-4 relative per product).
  g_gpu->set_gemm_mode(GemmMode::Fast);
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (auto [H, Dn, Dv, Dl] : std::vector<std::array<int64_t, 4>>{{4, 32, 32, 64}, {128, 128, 128, 512}})
      for (int64_t T : {64, 201}) {
        BothLinear kvb(H * (Dn + Dv), Dl, dt);
        const int64_t Dr = 64;
        Tensor q = randn({T, H * (Dn + Dr)});
        const double eq = cmp(g_gpu->mla_absorb_q(up(q), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_q(q, kvb.c, H, Dn, Dv)).rel;
        const bool tf32_q = std::string(g_gpu->last_absorb_path()) == "tf32-batched";
        record("mla_absorb_q", fmt::format("fast (TF32 batched) {} T={} H={} Dn={} Dl={}", dname(dt), T, H, Dn, Dl),
               tf32_q ? eq : INFINITY, 2e-3);
        Tensor o = randn({T, H, Dl});
        const double eo = cmp(g_gpu->mla_absorb_out(up(o), kvb.g, H, Dn, Dv), g_cpu->mla_absorb_out(o, kvb.c, H, Dn, Dv)).rel;
        const bool tf32_o = std::string(g_gpu->last_absorb_path()) == "tf32-batched";
        record("mla_absorb_out", fmt::format("fast (TF32 batched) {} T={} H={} Dv={} Dl={}", dname(dt), T, H, Dv, Dl),
               tf32_o ? eo : INFINITY, 2e-3);
      }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

// ---------------------------------------------------------------- indexer
// Checks a GPU top-k against exact (double) scores: ascending, distinct, causal, the right count, and no
// unselected position scoring clearly above a selected one. Returns the number of rows equal to the CPU's.
struct TopkResult {
  double violation = 0;  // max over rows of (best unselected - worst selected) / max |score|, if positive
  bool structure_ok = true;
  int64_t rows = 0, equal_rows = 0;
};
TopkResult check_topk(const Tensor& gpu_idx, const Tensor& cpu_idx, const Tensor& q, const Tensor& w, const Tensor& kp,
                      const AttnBatch& ab, int64_t heads, int64_t dim, int64_t topk) {
  TopkResult r;
  const int64_t T = gpu_idx.dim(0), K = gpu_idx.dim(1);
  if (cpu_idx.dim(1) != K) {
    r.structure_ok = false;
    return r;
  }
  for (int64_t t = 0; t < T; ++t) {
    const int32_t p = ab.pos_of_token[size_t(t)], s = ab.seq_of_token[size_t(t)];
    const int32_t* g = gpu_idx.data<int32_t>() + t * K;
    const int32_t* c = cpu_idx.i32() + t * K;
    ++r.rows;
    r.equal_rows += std::equal(g, g + K, c);
    const int64_t want = std::min<int64_t>(topk, p + 1);
    for (int64_t j = 0; j < K; ++j) {
      if (j < want) {
        if (g[j] < 0 || g[j] > p || (j > 0 && g[j] <= g[j - 1])) r.structure_ok = false;
      } else if (g[j] != -1) {
        r.structure_ok = false;
      }
    }
    if (!r.structure_ok || p + 1 <= topk) continue;
    std::vector<double> sc(size_t(p + 1));
    double amax = 0;
    for (int32_t j = 0; j <= p; ++j) {
      const float* kj = kp.f32() + int64_t(ab.slot(s, j)) * dim;
      double acc = 0;
      for (int64_t h = 0; h < heads; ++h) {
        double d = 0;
        for (int64_t i = 0; i < dim; ++i) d += double(q.f32()[(t * heads + h) * dim + i]) * kj[i];
        acc += double(w.f32()[t * heads + h]) * std::max(0.0, d);
      }
      sc[size_t(j)] = acc;
      amax = std::max(amax, std::fabs(acc));
    }
    std::vector<char> sel(size_t(p + 1), 0);
    for (int64_t j = 0; j < want; ++j) sel[size_t(g[j])] = 1;
    double worst_sel = INFINITY, best_unsel = -INFINITY;
    for (int32_t j = 0; j <= p; ++j)
      (sel[size_t(j)] ? worst_sel : best_unsel) =
          sel[size_t(j)] ? std::min(worst_sel, sc[size_t(j)]) : std::max(best_unsel, sc[size_t(j)]);
    if (amax > 0) r.violation = std::max(r.violation, (best_unsel - worst_sel) / amax);
  }
  return r;
}

void check_indexer() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t heads, dim, topk;
    int tie;  // 0: random, 1: identical keys, 2: zero weights, 3: negative weights
  };
  const std::vector<Case> cases = {
      {"tiny 3 seqs", {40, 23, 64}, {40, 23, 64}, 4, 16, 32, 16, 0},
      {"decode 3 seqs ctx 2047..5000", {2047, 2049, 5000}, {1, 1, 1}, 64, 64, 128, 2048, 0},
      {"chunk 40 of ctx 3000", {3000}, {40}, 16, 64, 128, 2048, 0},
      {"decode 2 seqs ctx 20000, 40000 (split top-k)", {20000, 40000}, {1, 2}, 64, 64, 128, 2048, 0},
      {"identical keys, ctx 30000 (split top-k ties)", {30000}, {2}, 64, 16, 32, 512, 1},
      {"identical keys (all tie)", {300, 70}, {5, 70}, 4, 16, 32, 16, 1},
      {"zero weights (all tie)", {300}, {7}, 4, 16, 32, 64, 2},
      {"zero queries, negative weights (+-0)", {500}, {9}, 8, 16, 32, 64, 3},
  };
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, 0);
    Tensor q = randn({sc.T, c.heads * c.dim}), w = randn({sc.T, c.heads}, 0.1f), kp = randn({sc.rows, c.dim});
    if (c.tie == 1)
      for (int64_t r = 1; r < sc.rows; ++r) std::copy_n(kp.f32(), c.dim, kp.f32() + r * c.dim);
    if (c.tie == 2) std::fill(w.f32(), w.f32() + w.numel(), 0.0f);
    if (c.tie == 3) {  // every dot product 0, weights negative: scores are +0 / -0 and must tie
      for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = -std::fabs(w.f32()[i]);
      std::fill(q.f32(), q.f32() + q.numel(), 0.0f);
    }
    Tensor ref = g_cpu->indexer_topk(q, w, kp, sc.ab, c.heads, c.dim, c.topk);
    Tensor got = g_gpu->to_host(g_gpu->indexer_topk(up(q), up(w), up(kp), sc.ab, c.heads, c.dim, c.topk));
    TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, c.heads, c.dim, c.topk);
    const double err = r.structure_ok ? r.violation : INFINITY;
    record("indexer_topk", fmt::format("{} (T={}, {}/{} rows = CPU)", c.name, sc.T, r.equal_rows, r.rows), err,
           c.tie ? 0.0 : 1e-5);
    if (c.tie) record("indexer_topk ties = CPU", c.name, r.equal_rows == r.rows ? 0.0 : 1.0, 0.0);
  }
  // FP8 numerics: Hadamard + e4m3 rounding, bit-identical to the CPU.
  for (int64_t n : {32, 128}) {
    Tensor x = randn({300, n}, 3.f);
    for (int64_t r = 0; r < 300; r += 7)
      for (int64_t i = 0; i < n; ++i) x.f32()[r * n + i] *= 1e-3f;  // some tiny rows (amax clamp)
    Tensor xc = Tensor::empty(x.shape(), DType::F32);
    std::copy_n(x.f32(), x.numel(), xc.f32());
    Tensor xg = up(x);
    g_gpu->hadamard_fp8_round(xg, n);
    g_cpu->hadamard_fp8_round(xc, n);
    record("hadamard_fp8_round", fmt::format("300 rows of {} (bitwise)", n), cmp(xg, xc).maxrel, 0.0);
  }
}

// The tensor-core scores (fast GEMM mode, head_dim 128, <= 64 heads) against exact (double) scores, and
// their top-k as check_indexer does. Two value regimes: arbitrary fp32 (IndexerMode::Fp32: the kernel's
// hi + lo split) and Hadamard + e4m3-rounded q and keys (IndexerMode::Fp8: exact in bf16, one MMA per
// product). Score error: max over scored rows of max_j |gpu - exact| / max_j sum_h |w_h| relu(q_h . k_j)
// (rows normalised by the magnitude of their terms: with random-sign weights a score can cancel to far
// below its terms, and rounding errors scale with the terms); NaN or an unwritten (poisoned) score fails.
// Exact scores of row t and, in *mag, the largest sum_h |w_h| relu(q_h . k_j) of the row.
std::vector<double> exact_scores(const Tensor& q, const Tensor& w, const Tensor& kp, const AttnBatch& ab, int64_t heads,
                                 int64_t dim, int64_t t, int32_t p, double* mag) {
  std::vector<double> sc(size_t(p + 1)), mg(size_t(p + 1));
  const int32_t s = ab.seq_of_token[size_t(t)];
#pragma omp parallel for schedule(static)
  for (int32_t j = 0; j <= p; ++j) {
    const float* kj = kp.f32() + int64_t(ab.slot(s, j)) * dim;
    double acc = 0, m = 0;
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q.f32() + (t * heads + h) * dim;
      double d = 0;
      for (int64_t i = 0; i < dim; ++i) d += double(qh[i]) * kj[i];
      acc += double(w.f32()[t * heads + h]) * std::max(0.0, d);
      m += std::fabs(double(w.f32()[t * heads + h])) * std::max(0.0, d);
    }
    sc[size_t(j)] = acc, mg[size_t(j)] = m;
  }
  *mag = *std::max_element(mg.begin(), mg.end());
  return sc;
}

void check_indexer_tc() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t heads, topk;
    bool identical_keys = false;
  };
  const std::vector<Case> cases = {
      {"decode 1, ctx 9000", {9000}, {1}, 64, 64, 2048},
      {"decode 8 seqs, ctx 2049..33000", {2049, 3000, 4100, 5000, 8191, 10000, 20000, 33000}, {1, 1, 1, 1, 1, 1, 1, 1}, 64, 64, 2048},
      {"decode 3 short rows (<= top-k unscored) + 1", {100, 2048, 2049, 2200}, {1, 1, 1, 1}, 16, 64, 2048},
      {"prefill chunk 200 of one seq, pos 500..699", {700}, {200}, 64, 64, 256},
      {"prefill chunk 131 (partial 2-query block)", {650}, {131}, 16, 64, 256},
      {"mixed: chunk 150 + 3 decodes", {900, 3000, 700, 300}, {150, 1, 1, 1}, 16, 64, 256},
      {"mixed, 32 heads", {900, 1500}, {150, 2}, 64, 32, 256},
      {"decode 2, page 1, 48 heads", {1000, 1777}, {1, 1}, 1, 48, 512},
      {"identical keys (ties), chunk 140", {600}, {140}, 16, 64, 256, true},
  };
  g_gpu->set_gemm_mode(GemmMode::Fast);
  const int64_t dim = 128;
  for (const auto& c : cases)
    for (int fp8 = 0; fp8 < 2; ++fp8) {
      Scenario sc = make_scenario(c.ctx, c.n_new, c.page, 0);
      Tensor q = randn({sc.T, c.heads * dim}), w = randn({sc.T, c.heads}, 0.1f), kp = randn({sc.rows, dim});
      if (c.identical_keys)
        for (int64_t r = 1; r < sc.rows; ++r) std::copy_n(kp.f32(), dim, kp.f32() + r * dim);
      if (fp8) {  // the model's IndexerMode::Fp8 inputs (the CPU backend's rounding: the same bits)
        g_cpu->hadamard_fp8_round(q, dim);
        g_cpu->hadamard_fp8_round(kp, dim);
      }
      const std::string what = fmt::format("{}, {} (T={}, heads {})", c.name, fp8 ? "e4m3" : "fp32", sc.T, c.heads);
      Tensor qg = up(q), wg = up(w), kg = up(kp);
      // scores, both kernels against the exact ones
      Tensor s_tc = down(g_gpu->indexer_scores(qg, wg, kg, sc.ab, c.heads, dim, c.topk));
      const bool tc_path = std::string(g_gpu->last_indexer_path()) == "tc";
      g_gpu->set_gemm_mode(GemmMode::Exact);
      Tensor s_simt = down(g_gpu->indexer_scores(qg, wg, kg, sc.ab, c.heads, dim, c.topk));
      g_gpu->set_gemm_mode(GemmMode::Fast);
      const int64_t L = s_tc.dim(1);
      double e_tc = 0, e_simt = 0;
      int64_t scored = 0;
      for (int64_t t = 0; t < sc.T; ++t) {
        const int32_t p = sc.ab.pos_of_token[size_t(t)];
        if (p + 1 <= c.topk) continue;
        ++scored;
        double amax = 0, dt = 0, ds = 0;
        const std::vector<double> ex = exact_scores(q, w, kp, sc.ab, c.heads, dim, t, p, &amax);
        for (int32_t j = 0; j <= p; ++j) {
          const double a = s_tc.f32()[t * L + j], b = s_simt.f32()[t * L + j];
          dt = std::isfinite(a) ? std::max(dt, std::fabs(a - ex[size_t(j)])) : INFINITY;
          ds = std::isfinite(b) ? std::max(ds, std::fabs(b - ex[size_t(j)])) : INFINITY;
        }
        const double norm = amax > 0 ? amax : 1.0;
        e_tc = std::max(e_tc, dt / norm), e_simt = std::max(e_simt, ds / norm);
      }
      const double tol = fp8 ? 1e-5 : 5e-5;
      record("indexer scores tc", fmt::format("{}, {} rows", what, scored), tc_path ? e_tc : INFINITY, tol);
      record("indexer scores simt", fmt::format("{}, {} rows", what, scored), e_simt, kTolF32);
      // top-k through the tensor-core scores
      Tensor ref = g_cpu->indexer_topk(q, w, kp, sc.ab, c.heads, dim, c.topk);
      Tensor got = g_gpu->to_host(g_gpu->indexer_topk(qg, wg, kg, sc.ab, c.heads, dim, c.topk));
      TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, c.heads, dim, c.topk);
      record("indexer_topk tc", fmt::format("{} ({}/{} rows = CPU)", what, r.equal_rows, r.rows),
             r.structure_ok && tc_path ? r.violation : INFINITY, c.identical_keys ? 0.0 : tol);
      if (c.identical_keys) record("indexer_topk tc ties = CPU", what, r.equal_rows == r.rows ? 0.0 : 1.0, 0.0);
    }
  // Shapes the tensor-core kernel does not take stay on the SIMT kernel in the fast mode.
  Scenario sc = make_scenario({3000}, {2}, 16, 0);
  Tensor q = randn({sc.T, 16 * 64}), w = randn({sc.T, 16}, 0.1f), kp = randn({sc.rows, 64});
  Tensor ref = g_cpu->indexer_topk(q, w, kp, sc.ab, 16, 64, 512);
  Tensor got = g_gpu->to_host(g_gpu->indexer_topk(up(q), up(w), up(kp), sc.ab, 16, 64, 512));
  TopkResult r = check_topk(got, ref, q, w, kp, sc.ab, 16, 64, 512);
  record("indexer_topk fast, head_dim 64", fmt::format("SIMT fallback ({}/{} rows = CPU)", r.equal_rows, r.rows),
         r.structure_ok && std::string(g_gpu->last_indexer_path()) == "simt" ? r.violation : INFINITY, 1e-5);
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

// ---------------------------------------------------------------- MoE
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
  for (int64_t T : {1, 6, 120}) {
    Tensor x = randn({T, H}), logits = randn({T, E}), bias = randn({E}, 0.1f);
    Tensor ids, wts;
    g_cpu->moe_route(logits, bias, {4, 2, 4, true, 2.5f}, &ids, &wts);
    Tensor ref = g_cpu->moe_experts(x, ids, wts, ec);
    g_gpu->set_moe_path(cuda::MoePath::PerExpert);
    for (GemmMode mode : {GemmMode::Exact, GemmMode::Fast}) {
      g_gpu->set_gemm_mode(mode);
      Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), eg);
      record("moe_experts per-expert", fmt::format("T={} 16 FP8 experts top-4 {}", T, mode == GemmMode::Fast ? "fast" : "exact"),
             cmp(y, ref).rel, mode == GemmMode::Fast ? 5e-2 : kTolF32);
    }
    g_gpu->set_moe_path(cuda::MoePath::Auto);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

// Random SwiGLU experts (gate, up [I, H], down [H, I]) loaded on both backends.
struct BothExperts {
  std::vector<std::unique_ptr<BothLinear>> ws;
  std::vector<ExpertWeights> c, g;
  BothExperts(int64_t E, int64_t H, int64_t I, DType dt) {
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights ec, eg;
      for (auto [lc, lg, N, K] : {std::tuple{&ec.gate, &eg.gate, I, H}, std::tuple{&ec.up, &eg.up, I, H},
                                  std::tuple{&ec.down, &eg.down, H, I}}) {
        ws.push_back(std::make_unique<BothLinear>(N, K, dt));
        *lc = ws.back()->c, *lg = ws.back()->g;
      }
      c.push_back(ec), g.push_back(eg);
    }
  }
};

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
  for (const Shape& sh : shapes) {
    BothExperts ex(sh.E, sh.H, sh.I, sh.dt);
    for (int64_t k : {4, 8}) {
      const MoeRouting cfg = sh.E == 16 ? MoeRouting{4, 2, int(k), true, 2.5f} : MoeRouting{8, 4, int(k), true, 2.5f};
      for (int64_t T : {1, 3, 8, 33, 128}) {
        Tensor x = randn({T, sh.H}), logits = randn({T, sh.E}, 2.f), bias = randn({sh.E}, 0.1f);
        Tensor ig, wg;
        g_gpu->moe_route(up(logits), up(bias), cfg, &ig, &wg);
        Tensor ids = g_gpu->to_host(ig), wts = g_gpu->to_host(wg);
        Tensor ref = g_cpu->moe_experts(x, ids, wts, ex.c);
        g_gpu->set_moe_path(cuda::MoePath::Auto);
        Tensor xg = up(x);
        Tensor y = g_gpu->moe_experts(xg, ig, wg, ex.g);
        const std::string path = g_gpu->last_moe_path();
        const std::string what = fmt::format("{} E={} H={} I={} top-{} T={}", dname(sh.dt), sh.E, sh.H, sh.I, k, T);
        record("moe_experts grouped", what, path == "grouped" ? cmp(y, ref).rel : INFINITY, kTolF32);
        Tensor y2 = g_gpu->moe_experts(xg, ig, wg, ex.g);  // deterministic: bitwise the same
        record("moe_experts grouped rerun", what, compare(down(y2), down(y)).maxrel, 0.0);
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
    Tensor ref = g_cpu->moe_experts(x, ids, wts, e.c);
    Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), e.g);
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
    Tensor ref = g_cpu->moe_experts(x, ids, wref, small.c);
    Tensor y = g_gpu->moe_experts(up(x), up(bad), up(wts), small.g);
    record("moe_experts grouped", "ids outside [0, E) ignored, T=33", cmp(y, ref).rel, kTolF32);
  }
  // Auto in the fast mode leaves large batches to the per-expert (cuBLASLt) path.
  {
    const int64_t T = g_gpu->moe_grouped_max_tokens() + 1, k = 4, H = 128;
    Tensor x = randn({T, H}), logits = randn({T, 16}, 2.f), bias = randn({16}, 0.1f), ids, wts;
    g_cpu->moe_route(logits, bias, {4, 2, int(k), true, 2.5f}, &ids, &wts);
    Tensor ref = g_cpu->moe_experts(x, ids, wts, small.c);
    g_gpu->set_moe_path(cuda::MoePath::Auto);
    Tensor y = g_gpu->moe_experts(up(x), up(ids), up(wts), small.g);
    const bool per_expert = std::string(g_gpu->last_moe_path()) == "per-expert";
    record("moe_experts auto, fast mode", fmt::format("T={}: per-expert path", T), per_expert ? cmp(y, ref).rel : INFINITY,
           5e-2);
    g_gpu->set_gemm_mode(GemmMode::Exact);  // exact: grouped at any size, in chunks of tokens
    y = g_gpu->moe_experts(up(x), up(ids), up(wts), small.g);
    record("moe_experts auto, exact mode", fmt::format("T={}: grouped in chunks", T),
           std::string(g_gpu->last_moe_path()) == "grouped" ? cmp(y, ref).rel : INFINITY, kTolF32);
  }
  g_gpu->set_gemm_mode(GemmMode::Exact);
}
}  // namespace

int main() {
  try {
    g_cpu = make_cpu_backend(0);
    cuda::CudaOptions o;
    o.poison = true;
    o.gemm = GemmMode::Exact;
    g_gpu = cuda::make_cuda_backend(o);
    check_norms_and_elementwise();
    check_rope_copy_cache();
    check_linear();
    check_mla();
    check_indexer();
    check_indexer_tc();
    check_moe();
    check_moe_grouped();
    const auto st = g_gpu->memory_stats();
    std::printf("device memory: peak in use %.1f MiB, %zu cudaMalloc calls by the caching allocator\n",
                double(st.peak_in_use) / (1 << 20), st.cuda_mallocs);
    return summary("gpu_ops_check") ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_ops_check: error: %s\n", e.what());
    return 2;
  }
}
