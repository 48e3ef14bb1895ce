// Golden tests: dsserve's CPU forward against logits computed by transformers' DeepseekV32/V3
// (tools/reference/golden.py, run on the GPU machine image) on committed tiny checkpoints.
// Tolerance: max |err| / max |ref| <= 1e-4 per sequence (fp32 math on both sides).
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "backend/backend.h"
#include "golden_util.h"

using namespace ds;
using namespace ds::model;

namespace {
constexpr double kTol = 1e-4;

struct Case {
  std::string name;
  bool has_fp8_ref;
};

class Golden : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = golden::fixture(GetParam().name);
    be_ = backend::make_cpu_backend(0);
    model_ = Model::load(dir_, *be_);
    seqs_ = golden::sequences(dir_);
  }
  NpyArray ref(const std::string& file) { return read_npy_f32(dir_ + "/ref/" + file); }
  int64_t V() const { return model_->config().vocab_size; }

  // Full prefill of sequence i with every row's logits.
  ForwardOutput prefill(size_t i, bool want_hidden = false) {
    auto cache = model_->make_cache(64, 4);
    std::vector<char> used(64, 0);
    ForwardBatch fb;
    fb.want_hidden = want_hidden;
    SequenceChunk sc;
    sc.tokens = seqs_[i];
    sc.page_table = golden::scattered_pages(int32_t(seqs_[i].size() + 3) / 4, 64, 7, used);
    sc.logits = LogitsMode::All;
    fb.seqs.push_back(sc);
    return model_->forward(fb, cache);
  }

  std::string dir_;
  std::unique_ptr<backend::Backend> be_;
  std::unique_ptr<Model> model_;
  std::vector<std::vector<int32_t>> seqs_;
};

TEST_P(Golden, FullPrefillMatchesReference) {
  for (auto mode : {IndexerMode::Fp32, IndexerMode::Fp8}) {
    if (mode == IndexerMode::Fp8 && !GetParam().has_fp8_ref) continue;
    model_->set_options({mode, AttentionForm::Absorbed});
    for (size_t i = 0; i < seqs_.size(); ++i) {
      auto out = prefill(i);
      auto r = ref(std::string("logits_") + (mode == IndexerMode::Fp8 ? "fp8_" : "fp32_") + std::to_string(i) + ".npy");
      ASSERT_EQ(r.shape, out.logits.shape());
      golden::ErrorMeter m;
      m.add(out.logits.f32(), r.data.data(), out.logits.numel());
      std::printf("[golden] %s seq %zu (%zu tokens) indexer %s: max rel err %.3g\n", GetParam().name.c_str(), i,
                  seqs_[i].size(), mode == IndexerMode::Fp8 ? "fp8" : "fp32", m.rel());
      EXPECT_LE(m.rel(), kTol) << "sequence " << i;
    }
  }
}

TEST_P(Golden, ExpandedFormEqualsAbsorbedForm) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    model_->set_options({IndexerMode::Fp32, AttentionForm::Absorbed});
    auto a = prefill(i);
    model_->set_options({IndexerMode::Fp32, AttentionForm::Expanded});
    auto e = prefill(i);
    auto r = ref("logits_fp32_" + std::to_string(i) + ".npy");
    golden::ErrorMeter ae, er;
    ae.add(e.logits.f32(), a.logits.f32(), a.logits.numel());
    er.add(e.logits.f32(), r.data.data(), e.logits.numel());
    std::printf("[golden] %s seq %zu expanded vs absorbed %.3g, expanded vs reference %.3g\n",
                GetParam().name.c_str(), i, ae.rel(), er.rel());
    EXPECT_LE(ae.rel(), kTol);
    EXPECT_LE(er.rel(), kTol);
  }
}

// All sequences in one batch over a shared, scattered page pool, in steps that mix chunked prefill
// and single-token decode; every logits row must equal the reference row at its position.
TEST_P(Golden, MixedChunkedPrefillAndDecodeBatch) {
  const int32_t page_size = 4, pool = 96;
  auto cache = model_->make_cache(pool, page_size);
  std::vector<char> used(pool, 0);
  std::vector<std::vector<int32_t>> tables;
  std::vector<NpyArray> refs;
  for (size_t i = 0; i < seqs_.size(); ++i) {
    tables.push_back(golden::scattered_pages(int32_t(seqs_[i].size() + page_size - 1) / page_size, pool, 11 + i, used));
    refs.push_back(ref("logits_fp32_" + std::to_string(i) + ".npy"));
  }
  std::vector<int32_t> done(seqs_.size(), 0);
  golden::ErrorMeter m;
  std::mt19937 rng(5);
  int steps = 0;
  while (true) {
    ForwardBatch fb;
    std::vector<size_t> who;
    for (size_t i = 0; i < seqs_.size(); ++i) {
      int32_t left = int32_t(seqs_[i].size()) - done[i];
      if (left == 0) continue;
      // Sequence 0 decodes one token at a time after a 5-token prompt; the others take chunks of 1..13.
      int32_t n = i == 0 && done[i] >= 5 ? 1 : std::min<int32_t>(left, 1 + int32_t(rng() % 13));
      SequenceChunk sc;
      sc.tokens.assign(seqs_[i].begin() + done[i], seqs_[i].begin() + done[i] + n);
      sc.start_pos = done[i];
      sc.page_table = tables[i];
      sc.logits = LogitsMode::All;
      fb.seqs.push_back(sc);
      who.push_back(i);
    }
    if (fb.seqs.empty()) break;
    auto out = model_->forward(fb, cache);
    for (size_t k = 0; k < who.size(); ++k) {
      size_t i = who[k];
      int32_t n = int32_t(fb.seqs[k].tokens.size());
      for (int32_t j = 0; j < n; ++j)
        m.add(out.logits.f32() + (out.logits_row0[k] + j) * V(), refs[i].data.data() + (done[i] + j) * V(), V());
      done[i] += n;
    }
    ++steps;
  }
  std::printf("[golden] %s mixed batch: %d steps, max rel err %.3g\n", GetParam().name.c_str(), steps, m.rel());
  EXPECT_LE(m.rel(), kTol);
}

// The MTP layer: draft logits for positions 0..T-2 from (final-norm hidden[t], token[t+1]).
TEST_P(Golden, MtpLayerMatchesReference) {
  ASSERT_TRUE(model_->has_mtp());
  for (size_t i = 0; i < seqs_.size(); ++i) {
    auto main = prefill(i, /*want_hidden=*/true);
    auto href = ref("hidden_" + std::to_string(i) + ".npy");
    golden::ErrorMeter hm;
    hm.add(main.hidden.f32(), href.data.data(), main.hidden.numel());
    EXPECT_LE(hm.rel(), kTol) << "final hidden, sequence " << i;

    const int64_t T = int64_t(seqs_[i].size()), H = model_->config().hidden_size;
    MtpInput in;
    in.hidden = main.hidden.rows(0, T - 1);
    in.next_tokens.assign(seqs_[i].begin() + 1, seqs_[i].end());
    auto cache = model_->make_cache(64, 4);
    std::vector<char> used(64, 0);
    ForwardBatch fb;
    SequenceChunk sc;
    sc.tokens.assign(seqs_[i].begin(), seqs_[i].end() - 1);
    sc.page_table = golden::scattered_pages(int32_t(T + 2) / 4, 64, 3, used);
    sc.logits = LogitsMode::All;
    fb.seqs.push_back(sc);
    auto out = model_->mtp_forward(fb, in, cache);
    auto r = ref("mtp_logits_" + std::to_string(i) + ".npy");
    ASSERT_EQ(r.shape, out.logits.shape());
    golden::ErrorMeter m;
    m.add(out.logits.f32(), r.data.data(), out.logits.numel());
    std::printf("[golden] %s MTP seq %zu: max rel err %.3g (hidden %.3g)\n", GetParam().name.c_str(), i, m.rel(),
                hm.rel());
    EXPECT_LE(m.rel(), kTol);
    (void)H;
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, Golden,
                         ::testing::Values(Case{"tiny_v32_fp8", true}, Case{"tiny_v3_bf16", false}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
