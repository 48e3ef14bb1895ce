// The fast mode's bf16 hand-off between the MLA absorptions and the attention (kFastBf16Absorb):
//   - mla_absorb_q_rope from kAbsorbBatchedMinTokens tokens gives q_abs in BF16 (nope part, kv_b and result
//     rounded to bf16, fp32 sums) against the CPU op in fp32: rel <= 1e-2 (expected ~2-3e-3: three bf16
//     roundings of u / sqrt(3) rms each, u = 2^-8); below the threshold, or with the part off, F32 as before;
//   - mla_absorb_out of a BF16 o_lat against the CPU op on the same (bf16-valued) o_lat: rel <= 1e-2 (the
//     weight's and the sums' rounding);
//   - the attention kernels with BF16 queries against themselves with the same values in fp32: the wgmma
//     forms write BF16 rows equal bit for bit to their fp32 rows rounded (they round q to bf16 anyway, and
//     the combine of split-K partials rounds last); the mma.sync kernel (hi + lo split: lo is zero) and the
//     SIMT kernel (q widened first) give fp32 rows equal bit for bit.
#include <cmath>
#include <cstring>

#include "attn_scenario.h"
#include "ops_check_util.h"

namespace opcheck {

namespace {

Tensor round_to_bf16(const Tensor& f) { return bf16_pair(f).first; }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void check_absorptions() {
  RopeTable rope;
  for (int i = 0; i < 32; ++i) rope.inv_freq.push_back(std::pow(10000.f, -float(i) / 32.f));
  rope.attention_factor = 1.1f;
  const uint32_t parts = g_gpu->options().fast_parts;
  g_gpu->set_gemm_mode(GemmMode::Fast);
  for (DType dt : {DType::F8_E4M3, DType::BF16})
    for (auto [H, Dn, Dv, Dl] : std::vector<std::array<int64_t, 4>>{{4, 32, 32, 64}, {128, 128, 128, 512}})
      for (int64_t T : {63, 64, 201}) {
        BothLinear kvb(H * (Dn + Dv), Dl, dt);
        const int64_t Dr = 64;
        Tensor q = randn({T, H * (Dn + Dr)});
        std::vector<int32_t> pos;
        for (int64_t t = 0; t < T; ++t) pos.push_back(int32_t((t * 7919) % 100000));
        const std::string what = fmt::format("{} T={} H={} Dn={} Dl={}", dname(dt), T, H, Dn, Dl);
        Tensor qc = Tensor::empty(q.shape(), DType::F32);  // the CPU op rotates its q in place
        std::memcpy(qc.raw(), q.raw(), q.nbytes());
        const Tensor ref = g_cpu->mla_absorb_q_rope(qc, kvb.c, H, Dn, Dv, pos, rope);
        const bool want_bf16 = T >= CudaBackend::kAbsorbBatchedMinTokens;
        g_gpu->set_fast_parts(cuda::kFastAll);
        const Tensor qa = g_gpu->mla_absorb_q_rope(up(q), kvb.g, H, Dn, Dv, pos, rope);
        const bool as_bf16 = qa.dtype() == DType::BF16 && std::string(g_gpu->last_absorb_path()) == "bf16-batched";
        record("mla_absorb_q_rope bf16", fmt::format("{} ({}, {})", what, dtype_name(qa.dtype()),
                                                     g_gpu->last_absorb_path()),
               as_bf16 == want_bf16 ? cmp(qa, ref).rel : INFINITY, want_bf16 ? 1e-2 : 2e-3);
        g_gpu->set_fast_parts(cuda::kFastAll & ~cuda::kFastBf16Absorb);
        const Tensor qf = g_gpu->mla_absorb_q_rope(up(q), kvb.g, H, Dn, Dv, pos, rope);
        record("mla_absorb_q_rope bf16", "part off: F32, " + what, qf.dtype() == DType::F32 ? 0.0 : 1.0, 0.0);

        auto [ob, ow] = bf16_pair(randn({T, H, Dl}));
        g_gpu->set_fast_parts(cuda::kFastAll);
        const Tensor out = g_gpu->mla_absorb_out(up(ob), kvb.g, H, Dn, Dv);
        record("mla_absorb_out bf16 o_lat", fmt::format("{} ({})", what, g_gpu->last_absorb_path()),
               out.dtype() == DType::F32 ? cmp(out, g_cpu->mla_absorb_out(ow, kvb.c, H, Dn, Dv)).rel : INFINITY,
               1e-2);
      }
  g_gpu->set_fast_parts(parts);
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

void check_attention_bf16_queries() {
  struct Case {
    const char* name;
    std::vector<int32_t> ctx, n_new;
    int32_t page;
    int64_t sparse_k, H, Dl;
  };
  const std::vector<Case> cases = {
      {"T=1, sparse 2048 of 3000 (split-K + combine)", {3000}, {1}, 64, 2048, 128, 512},
      {"T=64 causal prefill", {64}, {64}, 64, 0, 128, 512},
      {"T=300, K=100, 100 heads, page 1", {1000}, {300}, 1, 100, 100, 512},
      {"demo widths: T=40 + decode, 36 heads", {700, 90}, {40, 1}, 16, 512, 36, 256},
  };
  const std::pair<cuda::MlaKernel, const char*> kernels[] = {{cuda::MlaKernel::Wgmma, "wgmma"},
                                                             {cuda::MlaKernel::WgmmaPair, "wgmma-pair"},
                                                             {cuda::MlaKernel::Tc, "tc"},
                                                             {cuda::MlaKernel::Simt, "simt"}};
  for (const auto& c : cases) {
    Scenario sc = make_scenario(c.ctx, c.n_new, c.page, c.sparse_k);
    const int64_t D = c.Dl + 64;
    auto [pb, pw] = bf16_pair(randn({sc.rows, D}));
    auto [qb, qw] = bf16_pair(randn({sc.T, c.H, D}, 0.3f));
    const Tensor pbg = up(pb), ig = up(sc.index), qbg = up(qb), qwg = up(qw);
    const float scale = 1.0f / std::sqrt(float(D));
    const std::string what = fmt::format("{} (T={} H={} K={})", c.name, sc.T, c.H, sc.K);
    for (auto [k, name] : kernels) {
      g_gpu->set_gemm_mode(GemmMode::Fast);
      g_gpu->set_mla_kernel(k);
      const Tensor of = g_gpu->to_host(g_gpu->mla_attention_absorbed(qwg, pbg, ig, sc.ab, c.Dl, scale));
      const Tensor ob = g_gpu->to_host(g_gpu->mla_attention_absorbed(qbg, pbg, ig, sc.ab, c.Dl, scale));
      const std::string path = g_gpu->last_mla_path();
      const bool wg = path == "wgmma" || path == "wgmma-pair";
      // The wgmma forms: BF16 rows = their fp32 rows rounded; the others: fp32 rows, the same bits.
      const bool ok = path == name && (wg ? ob.dtype() == DType::BF16 && same_bits(ob, round_to_bf16(of))
                                          : ob.dtype() == DType::F32 && same_bits(ob, of));
      record("mla_attention_absorbed bf16 q", fmt::format("{} ({} out) (bitwise): {}", path,
                                                          dtype_name(ob.dtype()), what),
             ok ? 0.0 : 1.0, 0.0);
      if (wg) {  // the query tiles by cp.async (DSSERVE_MLA_Q_ASYNC): the same shared memory, the same bits
        g_gpu->set_mla_q_async(true);
        const Tensor oa = g_gpu->to_host(g_gpu->mla_attention_absorbed(qbg, pbg, ig, sc.ab, c.Dl, scale));
        g_gpu->set_mla_q_async(false);
        record("mla_attention_absorbed bf16 q",
               fmt::format("{} query by cp.async = by loads (bitwise): {}", path, what),
               oa.dtype() == ob.dtype() && same_bits(oa, ob) ? 0.0 : 1.0, 0.0);
      }
    }
  }
  g_gpu->set_mla_kernel(cuda::MlaKernel::Auto);
  g_gpu->set_gemm_mode(GemmMode::Exact);
}

}  // namespace

void check_bf16_absorb() {
  check_absorptions();
  check_attention_bf16_queries();
}

}  // namespace opcheck
