// gpu_bench's attention tables (docs/PERF.md), each against the ceilings measured in the same run:
//   sparse MLA (`gpu_bench mla`): SIMT vs mma.sync vs wgmma kernel, decode batches and prefill;
//   dense causal MHA prefill (`gpu_bench mha`) vs the absorbed tensor-core kernel over the same keys;
//   indexer scores (`gpu_bench indexer`): SIMT vs tensor-core kernel, then on IndexerMode::Fp8 values the
//   mma.sync kernel vs the FP8 wgmma kernel (`gpu_bench indexer-wgmma`).
#include "gpu_bench_attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kernels.h"
#include "backend/kv_fp8.h"
#include "check_util.h"
#include "gpu_bench_util.h"

namespace ds::gpubench {
using namespace ds::backend;

namespace {
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

// The diagnostic build's phase tables of the wgmma kernels (cmake -DDSSERVE_MLA_PHASES=ON,
// mla_phase_clock.cuh) over one call of `op`: per role, cycles per step (pair form: per pair of key blocks)
// of each phase and their share of the role's cycles. Prints nothing in the normal build.
constexpr int kPhaseRoles = 3, kPhaseSlots = 16;
using PhaseNames = const char* [kPhaseRoles][kPhaseSlots - 1];
const PhaseNames kOneBlockPhases = {
    {"wait keys", "issue S", "wait P V (s-1)", "wait S", "mask + row max", "rescale factors", "weights P + sums",
     "wait P free", "P to smem", "rescale O + issue P V", "", "", "", "", "outside the loop"},
    {"wait keys", "wait P ready", "rescale O + issue P V", "wait P V", "arrive free", "", "", "", "", "", "", "", "",
     "", "outside the loop"},
    {"positions -> rows", "wait free buffer", "ring + arrive", "issue gathers", "", "", "", "", "", "", "", "", "", "",
     "outside the loop"}};
const PhaseNames kPairPhases = {
    {"wait A keys", "issue S_A", "wait S_A", "mask + max + rescale O", "weights P_A", "P_A to smem", "issue P_A V_A",
     "wait max M (wg 1)", "wait P_A V_A", "rescale O to M", "wait P_B (wg 1)", "issue P_B V_B", "wait P_B V_B", "",
     "outside the loop"},
    {"wait B keys", "issue S_B", "wait P_A (wg 0)", "wait S_B", "rescale O + issue P_A V_A", "mask + max M",
     "weights P_B", "wait P_A V_A", "rescale O to M", "wait P_B tile free", "P_B to smem", "issue P_B V_B",
     "wait P_B V_B", "", "outside the loop"},
    {"positions -> rows", "wait free halves", "issue gathers", "", "", "", "", "", "", "", "", "", "", "",
     "outside the loop"}};

template <typename Op>
void print_mla_phases(const char* form, bool (*totals)(unsigned long long*, bool), const PhaseNames& names,
                      const char* label, int B, Op&& op) {
  constexpr int R = kPhaseRoles, S = kPhaseSlots;
  unsigned long long tot[R * S];
  if (!totals(nullptr, true)) return;
  op();
  cudaDeviceSynchronize();
  if (!totals(tot, true)) return;
  static const char* roles[R] = {"warpgroup 0", "warpgroup 1", "producer"};
  std::printf("\n%s MLA phases, %s %d queries (clock64 cycles of lane 0 of each role's first warp, all blocks):\n"
              "| role | phase | cycles per step | share |\n|---|---|---|---|\n", form, label, B);
  for (int r = 0; r < R; ++r) {
    unsigned long long sum = 0;
    for (int i = 0; i < S - 1; ++i) sum += tot[r * S + i];
    const double steps = double(std::max<unsigned long long>(tot[r * S + S - 1], 1));
    for (int i = 0; i < S - 1; ++i)
      if (names[r][i][0] && tot[r * S + i])
        std::printf("| %s | %s | %.0f | %.1f%% |\n", roles[r], names[r][i], tot[r * S + i] / steps,
                    100.0 * tot[r * S + i] / double(std::max<unsigned long long>(sum, 1)));
    std::printf("| %s | (all, %.0f steps) | %.0f | 100%% |\n", roles[r], steps, sum / steps);
  }
  std::fflush(stdout);
}
}  // namespace

void bench_mla(const Ceilings& c) {
  const int H = 128, Dl = 512, D = 576, K = 2048, page = 64;
  const int64_t R = int64_t(1) << 21;  // 2M pool rows (2.4 GB of BF16), shared by all sequences' page tables
  Tensor pool = be->empty({R, D}, DType::BF16);
  fill_random(pool.raw(), pool.nbytes(), 0xbf, 0);
  const cuda::GemmMode mode0 = be->options().gemm;
  // Four kernels on the same inputs: SIMT fp32 (exact mode), the mma.sync tensor-core kernel (fast mode, tc
  // pinned; two-part queries and weights), the wgmma kernel and its two-block form (fast mode, pinned; bf16
  // queries and weights). Bytes = the gathered key rows + q + output; useful FLOP = 2 B H K (D + Dl) (the tc kernel issues
  // twice that in MMAs). diff = ||x - simt|| / ||simt||. Times: events around the op (host work included:
  // page-table upload), median; "device" = profile mode's events around the kernel + split merge alone.
  struct Variant {
    cuda::GemmMode mode;
    cuda::MlaKernel pin;
    const char* want;
  };
  const Variant vs[4] = {{cuda::GemmMode::Exact, cuda::MlaKernel::Auto, "simt"},
                         {cuda::GemmMode::Fast, cuda::MlaKernel::Tc, "tc"},
                         {cuda::GemmMode::Fast, cuda::MlaKernel::Wgmma, "wgmma"},
                         {cuda::GemmMode::Fast, cuda::MlaKernel::WgmmaPair, "wgmma-pair"}};
  auto run = [&](const char* label, int B, int seqs, int ctx, int reps) {
    const int sets = int(std::clamp<int64_t>((int64_t(64) << 20) / (int64_t(B) * K * D * 2), 1, 8));
    MlaProblem pr = mla_problem(B, seqs, ctx, K, page, R, sets);
    Tensor q = B >= 1024 ? rand_f32_tiled({B, H, D}, 0.05f) : rand_f32({B, H, D}, 0.05f);
    double t[4], dev[4], merge[4];
    Tensor out[4];
    std::string path[4];
    for (int k = 0; k < 4; ++k) {
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
    be->set_mla_kernel(cuda::MlaKernel::Wgmma);
    print_mla_phases("wgmma", cuda::mla_wgmma_phase_totals, kOneBlockPhases, label, B,
                     [&] { be->mla_attention_absorbed(q, pool, pr.idx[0], pr.ab, Dl, 0.07f); });
    be->set_mla_kernel(cuda::MlaKernel::WgmmaPair);
    print_mla_phases("wgmma-pair", cuda::mla_wgmma_pair_phase_totals, kPairPhases, label, B,
                     [&] { be->mla_attention_absorbed(q, pool, pr.idx[0], pr.ab, Dl, 0.07f); });
    be->set_mla_kernel(cuda::MlaKernel::Auto);
    be->mla_attention_absorbed(q, pool, pr.idx[0], pr.ab, Dl, 0.07f);
    const std::string auto_path = be->last_mla_path();
    const Tensor ref = be->to_host_f32(out[0]);
    const double e_tc = gpucheck::compare(be->to_host_f32(out[1]), ref).rel;
    const double e_wg = gpucheck::compare(be->to_host_f32(out[2]), ref).rel;
    const double e_pair = gpucheck::compare(be->to_host_f32(out[3]), ref).rel;
    const double bytes = double(B) * K * D * 2 + double(B) * H * (D + Dl) * 4;
    const double flop = 2.0 * B * H * double(K) * (D + Dl);
    auto tf = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
    const double gbs = bytes / (t[2] * 1e-3) / 1e9;
    bool paths_ok = true;
    for (int k = 0; k < 4; ++k) paths_ok = paths_ok && path[k] == vs[k].want;
    std::printf("| %s | %d | %d | %.1f us | %.1f us | %.1f | %.1f us | **%.1f** | %.0f (%.1f%%) | %.2fx | %.1f + %.1f us | "
                "%.1f + %.1f us | %.1e | %.1e | %.1f us | **%.1f** | %.2fx | %.1f + %.1f us | %.1e | %s |%s\n",
                label, B, ctx, t[0] * 1e3, t[1] * 1e3, tf(t[1]), t[2] * 1e3, tf(t[2]), gbs, 100.0 * gbs / c.hbm_gbs,
                t[1] / t[2], dev[1], merge[1], dev[2], merge[2], e_tc, e_wg, t[3] * 1e3, tf(t[3]), t[2] / t[3], dev[3],
                merge[3], e_pair, auto_path.c_str(), paths_ok ? "" : " (a pinned path was not taken!)");
    std::fflush(stdout);
  };
  std::printf("\n| shape | queries | context | SIMT time | TC time | TC TFLOP/s | WGMMA time | WGMMA TFLOP/s "
              "| WGMMA GB/s (%% HBM) | WGMMA vs TC | TC device: attention + merge | WGMMA device: attention + merge "
              "| TC diff | WGMMA diff | PAIR time | PAIR TFLOP/s | PAIR vs WGMMA | PAIR device: attention + merge | PAIR diff "
              "| auto |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
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

}  // namespace ds::gpubench
