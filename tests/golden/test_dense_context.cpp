// The dense short-context path of the DSA indexer (model/layer.cpp): where every context of a step fits
// in index_topk, the indexer only writes its keys and the attention takes the causal index. The full path
// (scores + top-k) is forced on the same steps by a max_context above index_topk, as a recorded step of a
// larger context bucket has. Both must give the same logits and caches bit for bit, also on the later
// steps whose contexts pass index_topk and whose top-k reads the keys written while the scoring was skipped.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <random>

#include "golden_util.h"
#include "model/make_model.h"
#include "model/step.h"

using namespace ds;
using namespace ds::model;

namespace {

// A tiny random DeepSeek-V3.2 checkpoint with the given index_topk, removed with this object.
struct TinyCheckpoint {
  std::string dir;
  explicit TinyCheckpoint(int64_t index_topk)
      : dir((std::filesystem::temp_directory_path() /
             ("dsserve-densectx-" + std::to_string(index_topk) + "-" + std::to_string(getpid())))
                .string()) {
    MakeModelOptions o;
    o.preset = "tiny";
    o.seed = 7;
    o.overrides = {{"index_topk", index_topk}};
    make_model(o, dir);
  }
  ~TinyCheckpoint() { std::filesystem::remove_all(dir); }
};

struct Scenario {
  std::vector<int32_t> prompt_lens;  // one sequence each, prefilled in one step
  int decode_steps = 0;              // then one token per sequence per step
};

// The steps of a scenario: one prefill, then decodes; token ids from a fixed seed.
std::vector<ForwardBatch> make_steps(const Scenario& sc, int64_t vocab, int32_t pages_per_seq) {
  std::mt19937 r(3);
  std::vector<ForwardBatch> steps(1);
  for (size_t s = 0; s < sc.prompt_lens.size(); ++s) {
    SequenceChunk c;
    for (int32_t i = 0; i < sc.prompt_lens[s]; ++i) c.tokens.push_back(int32_t(r() % uint32_t(vocab)));
    for (int32_t p = 0; p < pages_per_seq; ++p) c.page_table.push_back(int32_t(s) * pages_per_seq + p);
    c.logits = LogitsMode::All;
    steps[0].seqs.push_back(c);
  }
  for (int d = 0; d < sc.decode_steps; ++d) {
    ForwardBatch fb;
    for (size_t s = 0; s < sc.prompt_lens.size(); ++s) {
      SequenceChunk c;
      c.tokens = {int32_t(r() % uint32_t(vocab))};
      c.start_pos = sc.prompt_lens[s] + d;
      c.page_table = steps[0].seqs[s].page_table;
      fb.seqs.push_back(c);
    }
    steps.push_back(fb);
  }
  return steps;
}

struct Outcome {
  std::vector<std::vector<float>> logits;  // per step
  int dense_steps = 0;                     // steps whose every context fit in index_topk
};

// Runs the steps on `cache`; max_context > 0 caps every step's layout there (forcing the full indexer
// path when it is above index_topk).
Outcome run_steps(const Model& m, const std::vector<ForwardBatch>& steps, KVCache& cache, int32_t max_context) {
  Outcome out;
  for (const auto& fb : steps) {
    StepLayout st = m.layout(fb, cache);
    st.ab.max_context = max_context;
    if (backend::context_width(st.ab) <= m.config().index_topk) ++out.dense_steps;
    StepBinding bound(m.backend(), st);
    Tensor l = m.backend().to_host_f32(m.step_logits(st, cache));
    out.logits.emplace_back(l.f32(), l.f32() + l.numel());
  }
  return out;
}

// The CPU backend's pools are host memory: compared byte for byte.
void expect_same_cache(const KVCache& a, const KVCache& b) {
  auto same = [](const std::vector<Tensor>& x, const std::vector<Tensor>& y, const char* what) {
    ASSERT_EQ(x.size(), y.size());
    for (size_t l = 0; l < x.size(); ++l) {
      ASSERT_EQ(x[l].nbytes(), y[l].nbytes());
      EXPECT_EQ(0, std::memcmp(x[l].raw(), y[l].raw(), x[l].nbytes())) << what << " layer " << l;
    }
  };
  same(a.latent, b.latent, "latent");
  same(a.index_k, b.index_k, "index keys");
}

void check(const TinyCheckpoint& ckpt, int64_t index_topk, const Scenario& sc, IndexerMode mode, std::optional<DType> kv_dtype,
           int want_dense) {
  auto be = backend::make_cpu_backend(2);
  // The absorbed attention on both sides (MHA pinned off): this compares index rows, not attention forms
  // (test_mha_prefill compares those).
  auto m = Model::load(ckpt.dir, *be, ModelOptions{mode, AttentionForm::Absorbed, MhaPrefill::Never});
  ASSERT_EQ(m->config().index_topk, index_topk);
  const int32_t page = 4, pages_per_seq = 16;
  const int32_t pool = pages_per_seq * int32_t(sc.prompt_lens.size());
  const auto steps = make_steps(sc, m->config().vocab_size, pages_per_seq);
  auto dense_cache = m->make_cache(pool, page, kv_dtype), full_cache = m->make_cache(pool, page, kv_dtype);
  const Outcome dense = run_steps(*m, steps, dense_cache, 0);
  const Outcome full = run_steps(*m, steps, full_cache, int32_t(2 * index_topk + page * pages_per_seq));
  // The scenario really exercises the dense path (and, where asked, the full one after it).
  EXPECT_EQ(dense.dense_steps, want_dense);
  EXPECT_EQ(full.dense_steps, 0);
  ASSERT_EQ(dense.logits.size(), full.logits.size());
  for (size_t s = 0; s < dense.logits.size(); ++s) {
    ASSERT_EQ(dense.logits[s].size(), full.logits[s].size());
    golden::ErrorMeter e;
    e.add(dense.logits[s].data(), full.logits[s].data(), int64_t(full.logits[s].size()));
    EXPECT_EQ(e.max_abs_err, 0.0) << "step " << s;
  }
  expect_same_cache(dense_cache, full_cache);
}

}  // namespace

// index_topk 16 below the final contexts: the prefill (contexts 9 and 14) and the first decodes are
// dense, the later decodes (contexts up to 24) score and select from keys the dense steps cached.
TEST(DenseContext, CrossesIndexTopk) {
  const TinyCheckpoint ckpt(16);
  const Scenario sc{{9, 14}, 10};
  for (IndexerMode mode : {IndexerMode::Fp32, IndexerMode::Fp8}) {
    SCOPED_TRACE(mode == IndexerMode::Fp8 ? "fp8 indexer" : "fp32 indexer");
    check(ckpt, 16, sc, mode, std::nullopt, 3);
    check(ckpt, 16, sc, mode, DType::F8_E4M3, 3);
  }
}

// index_topk 64 above every context (prompts of 40 and 33, 8 decodes): every step is dense.
TEST(DenseContext, BelowIndexTopk) {
  const TinyCheckpoint ckpt(64);
  const Scenario sc{{40, 33}, 8};
  for (IndexerMode mode : {IndexerMode::Fp32, IndexerMode::Fp8}) {
    SCOPED_TRACE(mode == IndexerMode::Fp8 ? "fp8 indexer" : "fp32 indexer");
    check(ckpt, 64, sc, mode, std::nullopt, 9);
    check(ckpt, 64, sc, mode, DType::F8_E4M3, 9);
  }
}
