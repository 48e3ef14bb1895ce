// gpu_model_check: one model run down two code paths that must give bitwise the same logits — the fused
// attention-block kernels against the separate ones, and branches on a second stream against the ops in order.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#include "check_util.h"
#include "model/random_weights.h"
#include "model_check_util.h"

using namespace ds;
using namespace ds::model;
using namespace gpucheck;
using backend::cuda::GemmMode;

namespace modelcheck {

namespace {
// The logits of a run on `cache`, every step's appended: the prefill batches in turn (`after_first` called
// after the first), then `decodes` greedy steps of `seqs` (their chunks as prefilled, in this order) from
// the tokens `next`, or, if empty, from the last prefill's argmax per row.
std::vector<float> run_logits(Model& m, KVCache& cache, const std::vector<ForwardBatch>& prefills,
                              std::vector<SequenceChunk> seqs, std::vector<int32_t> next, int decodes,
                              const std::function<void()>& after_first = {}) {
  const int64_t V = m.config().vocab_size;
  std::vector<float> logits;
  ForwardOutput res;
  auto keep = [&] { logits.insert(logits.end(), res.logits.f32(), res.logits.f32() + res.logits.numel()); };
  auto argmax = [&](size_t i) {
    const float* p = res.logits.f32() + int64_t(i) * V;
    return int32_t(std::max_element(p, p + V) - p);
  };
  for (size_t k = 0; k < prefills.size(); ++k) {
    res = m.forward(prefills[k], cache);
    keep();
    if (k == 0 && after_first) after_first();
  }
  if (next.empty())
    for (size_t i = 0; i < seqs.size(); ++i) next.push_back(argmax(i));
  for (int d = 0; d < decodes; ++d) {
    ForwardBatch fb;
    for (size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].start_pos += int32_t(seqs[i].tokens.size());
      seqs[i].tokens = {next[i]};
      fb.seqs.push_back(seqs[i]);
    }
    res = m.forward(fb, cache);
    keep();
    for (size_t i = 0; i < seqs.size(); ++i) next[i] = argmax(i);
  }
  return logits;
}

// 0 when two runs' logits are bitwise equal, else their largest relative difference (> 0; INFINITY when the
// lengths differ).
double bitwise_gap(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  if (std::memcmp(a.data(), b.data(), a.size() * 4) == 0) return 0.0;
  return max_rel(a.data(), b.data(), int64_t(a.size())) + 1e-30;
}

// One prompt prefilled into a fresh cache (pages in reverse order) and `steps` greedy decodes: every logit.
std::vector<float> prefill_then_decode(Model& m, const std::vector<int32_t>& prompt, int32_t page, int32_t pages,
                                       DType kv, int steps) {
  auto cache = m.make_cache(pages, page, kv);
  ForwardBatch fb;
  SequenceChunk sc;
  sc.tokens = prompt;
  for (int32_t p = 0; p < pages; ++p) sc.page_table.push_back(pages - 1 - p);
  fb.seqs.push_back(sc);
  return run_logits(m, cache, {fb}, fb.seqs, {}, steps);
}
}  // namespace

// The fused attention-block kernels (k_kv_fused.cu: mla_kv_write, indexer_key_write, mla_absorb_q_rope) inside
// whole forwards: the demo widths (2 layers, random weights), a 600-token prefill (above index_topk 512: the
// absorbed path with scored top-k) and 12 greedy decode steps, every KV dtype and both indexer modes, with the
// fusion on and off (DSSERVE_FUSED_KV): the logits must be bitwise equal. Without kFastBf16Absorb: the bf16
// absorption exists only in the fused form (its own check: check_bf16_absorb_model), the separate ops keep
// TF32.
void check_fused_kv_model(GemmMode mode) {
  ModelConfig cfg = demo_config();
  auto be = poisoned_backend(mode);
  be->set_fast_parts(be->options().fast_parts & ~backend::cuda::kFastBf16Absorb);
  ModelWeights w = random_weights(cfg, *be, 9);
  std::mt19937 r(3);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 600; ++i) prompt.push_back(int32_t(r() % uint32_t(cfg.vocab_size)));
  const int32_t page = 16, steps = 12, pages = int32_t((prompt.size() + steps + page - 1) / page);
  for (IndexerMode im : {IndexerMode::Fp32, IndexerMode::Fp8})
    for (DType kv : {DType::F32, DType::BF16, DType::F8_E4M3}) {
      ModelOptions mopt;
      mopt.indexer = im;
      Model m(cfg, w, *be, mopt);
      auto run = [&](bool fused) {
        be->set_fused_kv(fused);
        return prefill_then_decode(m, prompt, page, pages, kv, steps);
      };
      const std::vector<float> on = run(true), off = run(false);
      be->set_fused_kv(true);
      record("model fused KV = separate",
             fmt::format("demo widths {}, {} KV, {} indexer: prefill 600 + {} decodes (bitwise)",
                         mode == GemmMode::Exact ? "exact" : "fast", dtype_name(kv),
                         im == IndexerMode::Fp8 ? "fp8" : "fp32", steps),
             bitwise_gap(on, off), 0.0);
    }
}

// The fast mode's bf16 absorptions (kFastBf16Absorb: q_abs and o_lat in bf16 between the absorptions and the
// wgmma / mma.sync attention) inside whole forwards at the demo widths: a 600-token prefill (the absorbed path
// with scored top-k; 600 >= kAbsorbBatchedMinTokens) and 12 greedy decode steps (below it: unchanged), BF16
// and FP8 KV. Three runs: the absorptions exact (SIMT fp32), TF32, bf16. Not bitwise. On these random weights
// the logits' max gap is set less by the absorption's rounding than by what it flips downstream (top-k
// boundaries, the KV cache's own rounding): TF32 alone gives 3.3e-2 (BF16 KV) and 4.5e-2 (FP8 KV) of the
// largest logit, bf16 1.3x that (H100, 2026-12-06). So the bound is relative: the bf16 gap within 2x the TF32
// run's (a broken hand-off, a wrong scale or layout, gives gaps of order 1), and the same greedy tokens. Its
// fidelity against DeepSeek's reference is measured by scripts/fidelity-check.sh (docs/ACCURACY.md 3d).
void check_bf16_absorb_model() {
  using backend::cuda::kFastBf16Absorb;
  using backend::cuda::kFastTf32Absorb;
  ModelConfig cfg = demo_config();
  auto be = poisoned_backend(GemmMode::Fast);
  ModelWeights w = random_weights(cfg, *be, 13);
  std::mt19937 r(4);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 600; ++i) prompt.push_back(int32_t(r() % uint32_t(cfg.vocab_size)));
  const int32_t page = 16, steps = 12, pages = int32_t((prompt.size() + steps + page - 1) / page);
  const int64_t V = cfg.vocab_size;
  const uint32_t parts = be->options().fast_parts & ~(kFastBf16Absorb | kFastTf32Absorb);
  for (DType kv : {DType::BF16, DType::F8_E4M3}) {
    Model m(cfg, w, *be, ModelOptions{});
    auto run = [&](uint32_t absorb_parts) {
      be->set_fast_parts(parts | absorb_parts);
      return prefill_then_decode(m, prompt, page, pages, kv, steps);
    };
    const std::vector<float> exact = run(0), tf32 = run(kFastTf32Absorb);
    const std::vector<float> bf16 = run(kFastTf32Absorb | kFastBf16Absorb);
    const int rows = int(bf16.size() / size_t(V));
    int same = 0;
    for (int i = 0; i < rows; ++i)
      same += std::max_element(bf16.begin() + i * V, bf16.begin() + (i + 1) * V) - bf16.begin() ==
              std::max_element(exact.begin() + i * V, exact.begin() + (i + 1) * V) - exact.begin();
    const bool sized = bf16.size() == exact.size() && tf32.size() == exact.size();
    const double g_tf32 = sized ? max_rel(tf32.data(), exact.data(), int64_t(exact.size())) : INFINITY;
    const double g_bf16 = sized ? max_rel(bf16.data(), exact.data(), int64_t(exact.size())) : INFINITY;
    record("model bf16 absorb", fmt::format("demo widths, {} KV, prefill 600 + {} decodes: max gap to exact "
                                            "absorptions (TF32's: {:.2e}, bound 2x it)", dtype_name(kv), steps, g_tf32),
           g_bf16, 2.0 * g_tf32);
    record("model bf16 absorb", fmt::format("demo widths, {} KV: greedy tokens {}/{} as with exact absorptions",
                                            dtype_name(kv), same, rows),
           same == rows ? 0.0 : 1.0, 0.0);
  }
}

// Backend::branch on a second stream (CudaOptions::overlap): the attention block's cache writes and indexer
// weights beside its query path, the query's absorption beside the scores and top-k. At the demo widths
// (2 layers, random weights): a short prompt alone (the dense MHA path), a prefill of two long prompts
// (scored top-k) and 24 decode steps of all three, every KV dtype and both indexer modes: the logits must
// be bitwise those of the same steps with branches in order. Then recorded decode steps with branches on:
// replays bitwise equal to the steps run op by op.
void check_overlap_model(GemmMode mode) {
  ModelConfig cfg = demo_config();
  auto be = poisoned_backend(mode);
  ModelWeights w = random_weights(cfg, *be, 11);
  const int64_t V = cfg.vocab_size;
  std::mt19937 r(5);
  const std::vector<int32_t> lens = {37, 600, 300};
  const int32_t page = 16, decodes = 24;
  std::vector<SequenceChunk> seqs;
  int32_t next_page = 0;
  for (int32_t n : lens) {
    SequenceChunk sc;
    for (int32_t i = 0; i < n; ++i) sc.tokens.push_back(int32_t(r() % uint32_t(V)));
    const int32_t pages = (n + decodes + page - 1) / page;
    for (int32_t p = 0; p < pages; ++p) sc.page_table.push_back(next_page + pages - 1 - p);  // reversed
    next_page += pages;
    seqs.push_back(sc);
  }
  const std::vector<int32_t> first_tokens = {int32_t(r() % uint32_t(V)), int32_t(r() % uint32_t(V)), 7};
  const char* mname = mode == GemmMode::Exact ? "exact" : "fast";
  for (IndexerMode im : {IndexerMode::Fp32, IndexerMode::Fp8})
    for (DType kv : {DType::F32, DType::BF16, DType::F8_E4M3}) {
      ModelOptions mopt;
      mopt.indexer = im;
      Model m(cfg, w, *be, mopt);
      std::string paths;
      const int64_t branch_limit = be->options().branch_max_tokens;
      auto run = [&](bool overlap) {
        be->set_overlap(overlap);
        be->set_branch_max_tokens(INT64_MAX);  // the 900-token prefill branched too (by default it runs in order)
        auto cache = m.make_cache(next_page, page, kv);
        ForwardBatch alone, pair;
        alone.seqs = {seqs[0]};
        pair.seqs = {seqs[1], seqs[2]};
        std::vector<float> logits = run_logits(m, cache, {alone, pair}, seqs, first_tokens, decodes,
                                               [&] { paths += be->last_branch_path(); });
        paths += std::string("/") + be->last_branch_path() + " ";
        be->set_overlap(false);
        be->set_branch_max_tokens(branch_limit);
        return logits;
      };
      const std::vector<float> off = run(false), on = run(true);
      const double gap = bitwise_gap(on, off);
      record("model branches on a second stream = in order",
             fmt::format("demo widths {}, {} KV, {} indexer: MHA prefill 37, prefill 600 + 300, {} decodes of 3 "
                         "(bitwise; paths {})",
                         mname, dtype_name(kv), im == IndexerMode::Fp8 ? "fp8" : "fp32", decodes, paths),
             paths.find("inline/inline stream/stream") != std::string::npos ? gap : std::max(gap, 1.0), 0.0);
    }
  if (mode != GemmMode::Fast) return;
  be->set_overlap(true);
  Model mg(cfg, w, *be, ModelOptions{});
  Model me(cfg, w, *be, ModelOptions{});
  run_graph_steps("demo widths fast, branches on a second stream", *be, mg, me, {600, 530, 100, 40, 1000, 5}, 32, 64,
                  5e-2, /*lazy=*/false);
  std::printf("graph memory with branches: %.1f MiB\n",
              double(be->graph_memory_stats().in_use + be->graph_memory_stats().cached) / (1 << 20));
  be->set_overlap(false);
}

}  // namespace modelcheck
