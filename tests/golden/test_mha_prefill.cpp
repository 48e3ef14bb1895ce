// Dense MHA prefill (ModelOptions::mha_prefill, Backend::attention_mha_causal) on the golden tiny
// checkpoints: its logits against the absorbed path's (both fp32 on the CPU: the same attention up to
// rounding, so a tight bound) and against transformers' reference logits (the golden bound), for fresh
// prefills, chunks over cached prefixes in one batch of several sequences, and an FP8 KV cache; and the
// Auto rule's choices. Which path ran is counted on a metered backend (calls of attention_mha_causal).
#include <gtest/gtest.h>

#include <cstdio>
#include <optional>

#include "backend/backend.h"
#include "golden_util.h"
#include "perf/metered_backend.h"

using namespace ds;
using namespace ds::model;

namespace {
constexpr double kTolRef = 1e-4;   // the golden tests' bound against transformers
constexpr double kTolPath = 2e-5;  // MHA vs absorbed: fp32 on both sides

// Step k brings, for each listed sequence, its next n tokens (logits of every row).
struct Piece {
  size_t seq;
  int32_t n;
};
using Plan = std::vector<std::vector<Piece>>;

class MhaPrefillGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = golden::fixture(GetParam());
    metered_ = std::make_unique<perf::MeteredBackend>(backend::make_cpu_backend(0));
    model_ = Model::load(dir_, *metered_);
    seqs_ = golden::sequences(dir_);
  }
  int64_t V() const { return model_->config().vocab_size; }
  int64_t layers() const { return model_->config().num_hidden_layers; }
  // Longest prefix whose prefill attends to every earlier key (V3.2: up to index_topk tokens).
  int32_t short_len(size_t i) const {
    const auto& c = model_->config();
    const int32_t n = int32_t(seqs_[i].size());
    return c.has_indexer() ? std::min<int32_t>(n, int32_t(c.index_topk)) : n;
  }
  int64_t calls(const char* op) const {
    const auto& ops = metered_->op_times();
    auto it = ops.find(op);
    return it == ops.end() ? 0 : it->second.calls;
  }
  int64_t mha_calls() const { return calls("attention_mha_causal"); }

  // Runs the plan over one cache (scattered page tables in a shared pool), step k under modes[k].
  // Returns each sequence's logits rows by position (flattened [rows, V]) and the MHA calls per step.
  std::vector<std::vector<float>> run(const Plan& plan, const std::vector<MhaPrefill>& modes,
                                      std::optional<DType> kv_dtype, std::vector<int64_t>* mha_per_step,
                                      std::vector<int64_t>* absorbed_per_step = nullptr) {
    const int32_t page = 4, pool = 96;
    auto cache = model_->make_cache(pool, page, kv_dtype);
    std::vector<char> used(pool, 0);
    std::vector<std::vector<int32_t>> tables;
    for (size_t i = 0; i < seqs_.size(); ++i)
      tables.push_back(golden::scattered_pages(int32_t(seqs_[i].size() + page - 1) / page, pool, 11 + uint32_t(i), used));
    std::vector<int32_t> done(seqs_.size(), 0);
    std::vector<std::vector<float>> rows(seqs_.size());
    for (size_t k = 0; k < plan.size(); ++k) {
      ModelOptions o;
      o.mha_prefill = modes[k];
      model_->set_options(o);
      metered_->reset();
      ForwardBatch fb;
      for (const Piece& p : plan[k]) {
        SequenceChunk sc;
        sc.start_pos = done[p.seq];
        sc.tokens.assign(seqs_[p.seq].begin() + done[p.seq], seqs_[p.seq].begin() + done[p.seq] + p.n);
        sc.page_table = tables[p.seq];
        sc.logits = LogitsMode::All;
        fb.seqs.push_back(sc);
      }
      auto out = model_->forward(fb, cache);
      for (size_t s = 0; s < plan[k].size(); ++s) {
        const Piece& p = plan[k][s];
        const float* r = out.logits.f32() + int64_t(out.logits_row0[s]) * V();
        rows[p.seq].insert(rows[p.seq].end(), r, r + int64_t(p.n) * V());
        done[p.seq] += p.n;
      }
      if (mha_per_step) mha_per_step->push_back(mha_calls());
      if (absorbed_per_step) absorbed_per_step->push_back(calls("mla_attention_absorbed"));
    }
    return rows;
  }

  // Every row of `got` (positions 0..) against the reference logits of sequence i and against `other`.
  void compare(size_t i, const std::vector<float>& got, const std::vector<float>* other, bool vs_ref,
               const char* what) {
    golden::ErrorMeter er, eo;
    if (vs_ref) {
      auto r = read_npy_f32(dir_ + "/ref/logits_fp32_" + std::to_string(i) + ".npy");
      ASSERT_LE(got.size(), r.data.size());
      er.add(got.data(), r.data.data(), int64_t(got.size()));
    }
    if (other) {
      ASSERT_EQ(got.size(), other->size());
      eo.add(got.data(), other->data(), int64_t(got.size()));
    }
    std::printf("[mha] %s seq %zu (%zu rows) %s: vs absorbed %.3g, vs reference %.3g%s\n", GetParam().c_str(), i,
                got.size() / size_t(V()), what, eo.rel(), er.rel(), vs_ref ? "" : " (not compared)");
    if (vs_ref) {
      EXPECT_LE(er.rel(), kTolRef) << what << " sequence " << i;
    }
    if (other) {
      EXPECT_LE(eo.rel(), kTolPath) << what << " sequence " << i;
    }
  }

  std::string dir_;
  std::unique_ptr<perf::MeteredBackend> metered_;
  std::unique_ptr<Model> model_;
  std::vector<std::vector<int32_t>> seqs_;
};

TEST_P(MhaPrefillGolden, FreshPrefillEqualsAbsorbedAndReference) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    const Plan plan = {{{i, short_len(i)}}};
    std::vector<int64_t> ca, cm;
    auto a = run(plan, {MhaPrefill::Never}, {}, &ca);
    auto m = run(plan, {MhaPrefill::Always}, {}, &cm);
    EXPECT_EQ(ca[0], 0);
    EXPECT_EQ(cm[0], layers()) << "every layer takes the MHA path";
    compare(i, m[i], &a[i], true, "fresh prefill");
  }
}

// Three sequences in one batch: the first chunks through the absorbed path, then chunks over those cached
// prefixes (and a fresh sequence) through the MHA path, then one decode token each, also forced MHA.
TEST_P(MhaPrefillGolden, ChunksOverCachedPrefixesInOneBatch) {
  ASSERT_GE(seqs_.size(), 3u);
  const Plan plan = {{{0, 5}, {1, 3}}, {{0, 7}, {1, 9}, {2, 6}}, {{0, 1}, {1, 1}, {2, 1}}};
  for (std::optional<DType> kv : {std::optional<DType>{}, std::optional<DType>{DType::F8_E4M3}}) {
    const bool fp8 = kv.has_value();
    std::vector<int64_t> ca, cm;
    auto a = run(plan, {MhaPrefill::Never, MhaPrefill::Never, MhaPrefill::Never}, kv, &ca);
    auto m = run(plan, {MhaPrefill::Never, MhaPrefill::Always, MhaPrefill::Always}, kv, &cm);
    EXPECT_EQ(ca, (std::vector<int64_t>{0, 0, 0}));
    EXPECT_EQ(cm, (std::vector<int64_t>{0, layers(), layers()}));
    // FP8 cache: both paths read the same dequantised rows (tight bound); the reference is fp32 (not compared).
    for (size_t i = 0; i < 3; ++i) compare(i, m[i], &a[i], !fp8, fp8 ? "chunks, fp8 cache" : "chunks");
  }
}

TEST_P(MhaPrefillGolden, AutoRule) {
  const auto& c = model_->config();
  std::vector<int64_t> calls;
  // A fresh prefill: MHA (no row to expand beyond the step's own tokens). A decode token over a context of
  // 12: absorbed (12 expanded rows cost more than one query's absorption saves). Never: absorbed.
  run({{{0, 12}}, {{0, 1}}}, {MhaPrefill::Auto, MhaPrefill::Auto}, {}, &calls);
  EXPECT_EQ(calls, (std::vector<int64_t>{layers(), 0}));
  calls.clear();
  run({{{0, 12}}}, {MhaPrefill::Never}, {}, &calls);
  EXPECT_EQ(calls, (std::vector<int64_t>{0}));
  // Decided per sequence: a step of one decode token (sequence 0, context 13) and a fresh prefill of 10
  // (sequence 1) splits, the decode row absorbed, the prefill MHA; every row as the reference and as the
  // absorbed path everywhere.
  const Plan mixed = {{{0, 12}}, {{0, 1}, {1, 10}}};
  std::vector<int64_t> mc, ac, nc;
  auto m = run(mixed, {MhaPrefill::Auto, MhaPrefill::Auto}, {}, &mc, &ac);
  auto a = run(mixed, {MhaPrefill::Never, MhaPrefill::Never}, {}, &nc);
  EXPECT_EQ(mc, (std::vector<int64_t>{layers(), layers()}));
  EXPECT_EQ(ac, (std::vector<int64_t>{0, layers()}));
  EXPECT_EQ(nc, (std::vector<int64_t>{0, 0}));
  for (size_t i = 0; i < 2; ++i) compare(i, m[i], &a[i], true, "split step");
  // V3.2 past index_topk: the indexer selects, no dense path even when forced.
  if (c.has_indexer() && int64_t(seqs_[0].size()) > c.index_topk) {
    calls.clear();
    run({{{0, int32_t(seqs_[0].size())}}}, {MhaPrefill::Always}, {}, &calls);
    EXPECT_EQ(calls, (std::vector<int64_t>{0}));
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, MhaPrefillGolden, ::testing::Values("tiny_v32_fp8", "tiny_v3_bf16"));

}  // namespace
