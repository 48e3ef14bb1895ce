// runtime/step_recorder on the CPU backend (which cannot record steps, so nothing is captured): the
// buckets, the forward modes, and the padded, context-capped decode and verify steps a recording is made
// of, run op by op, against the plain forward on the tiny DeepSeek-V3.2 checkpoint. Padding rows write
// nothing and change no real row.
#include <gtest/gtest.h>

#include <random>

#include "golden_util.h"
#include "runtime/step_recorder.h"

using namespace ds;
using namespace ds::model;
using ds::runtime::ForwardMode;
using ds::runtime::StepRecorder;

TEST(StepRecorder, BatchBuckets) {
  const std::vector<std::pair<int32_t, int32_t>> want = {{1, 1},   {2, 2},   {3, 4},    {5, 8},    {8, 8},
                                                         {9, 16},  {17, 24}, {64, 64},  {65, 80},  {250, 256},
                                                         {257, 288}, {300, 320}};
  for (auto [n, b] : want) EXPECT_EQ(StepRecorder::batch_bucket(n, 512), b) << n;
  EXPECT_EQ(StepRecorder::batch_bucket(100, 100), 100);  // capped at max_bs
  EXPECT_EQ(StepRecorder::batch_bucket(7, 6 + 1), 7);
  EXPECT_THROW(StepRecorder::batch_bucket(9, 8), Error);
  EXPECT_THROW(StepRecorder::batch_bucket(0, 8), Error);
}

TEST(StepRecorder, ContextBuckets) {
  EXPECT_EQ(StepRecorder::context_bucket(1, 163840), 256);
  EXPECT_EQ(StepRecorder::context_bucket(256, 163840), 256);
  EXPECT_EQ(StepRecorder::context_bucket(257, 163840), 512);
  EXPECT_EQ(StepRecorder::context_bucket(70000, 163840), 131072);
  EXPECT_EQ(StepRecorder::context_bucket(140000, 163840), 163840);  // capped at the model's limit
  EXPECT_EQ(StepRecorder::context_bucket(200000, 163840), 262144);  // beyond it: still covers the context
  EXPECT_EQ(StepRecorder::context_bucket(100, 0), 256);
}

TEST(StepRecorder, PaddedCappedStepEqualsPlainForward) {
  auto be = backend::make_cpu_backend(2);
  auto m = Model::load(golden::fixture("tiny_v32_fp8"), *be);
  StepRecorder rec(*m, 8, /*lazy=*/true);
  const int64_t V = m->config().vocab_size;
  const int32_t page = 4, pool = 96;
  auto plain = m->make_cache(pool, page), padded = m->make_cache(pool, page);
  const auto seqs = golden::sequences(golden::fixture("tiny_v32_fp8"));
  std::vector<char> used(pool, 0);
  ForwardBatch pre;
  for (size_t i = 0; i < 3; ++i) {
    SequenceChunk sc;
    sc.tokens.assign(seqs[i].begin(), seqs[i].begin() + 10 + 3 * i);
    sc.page_table = golden::scattered_pages(int32_t(sc.tokens.size() + 12 + page - 1) / page, pool, 3 + i, used);
    pre.seqs.push_back(sc);
  }
  m->forward(pre, plain);
  m->forward(pre, padded);
  std::mt19937 r(9);
  std::vector<int32_t> pos = {10, 13, 16};
  for (int step = 0; step < 10; ++step) {
    ForwardBatch fb;
    for (size_t i = 0; i < 3; ++i)
      if (r() % 3 != 0 || (i == 2 && fb.seqs.empty())) {
        SequenceChunk sc;
        sc.tokens = {int32_t(r() % uint32_t(V))};
        sc.start_pos = pos[i]++;
        sc.page_table = pre.seqs[i].page_table;
        fb.seqs.push_back(sc);
      }
    auto a = m->forward(fb, plain);                                    // the CPU backend records nothing
    auto b = rec.forward_padded_eager(ForwardMode::Decode, fb, padded);  // padded to 1 / 2 / 4 rows, capped
    ASSERT_EQ(a.logits.numel(), b.logits.numel());
    ASSERT_EQ(a.logits_row0, b.logits_row0);
    golden::ErrorMeter e;
    e.add(b.logits.f32(), a.logits.f32(), a.logits.numel());
    EXPECT_LT(e.rel(), 1e-6) << "step " << step;
  }
  EXPECT_EQ(rec.stats().captured, 0);
  // The padding rows wrote nothing: both caches hold the same rows.
  for (size_t l = 0; l < plain.latent.size(); ++l) {
    golden::ErrorMeter e;
    e.add(padded.latent[l].f32(), plain.latent[l].f32(), plain.latent[l].numel());
    e.add(padded.index_k[l].f32(), plain.index_k[l].f32(), plain.index_k[l].numel());
    EXPECT_EQ(e.max_abs_err, 0.0) << "layer " << l;
  }
}

// Verify steps (speculative decoding): k tokens per sequence and the logits of all k, padded to a batch
// bucket with k-token padding sequences. Equal to the plain forward; padding writes nothing.
TEST(StepRecorder, PaddedVerifyStepEqualsPlainForward) {
  auto be = backend::make_cpu_backend(2);
  auto m = Model::load(golden::fixture("tiny_v32_fp8"), *be);
  StepRecorder rec(*m, 8, /*lazy=*/true);
  const int64_t V = m->config().vocab_size;
  const int32_t page = 4, pool = 96, k = 3;
  auto plain = m->make_cache(pool, page), padded = m->make_cache(pool, page);
  const auto seqs = golden::sequences(golden::fixture("tiny_v32_fp8"));
  std::vector<char> used(pool, 0);
  ForwardBatch pre;
  for (size_t i = 0; i < 3; ++i) {
    SequenceChunk sc;
    sc.tokens.assign(seqs[i].begin(), seqs[i].begin() + 9 + 2 * i);
    sc.page_table = golden::scattered_pages(int32_t(sc.tokens.size() + 4 * k + page - 1) / page, pool, 5 + i, used);
    pre.seqs.push_back(sc);
  }
  m->forward(pre, plain);
  m->forward(pre, padded);
  std::mt19937 r(11);
  std::vector<int32_t> pos = {9, 11, 13};
  for (int step = 0; step < 4; ++step) {
    ForwardBatch fb;
    for (size_t i = 0; i < 3; ++i) {
      if (step % 2 && i == 1) continue;  // 3 sequences, then 2: padded to 4 and 2
      SequenceChunk sc;
      for (int j = 0; j < k; ++j) sc.tokens.push_back(int32_t(r() % uint32_t(V)));
      sc.start_pos = pos[i];
      pos[i] += k;
      sc.page_table = pre.seqs[i].page_table;
      sc.logits = LogitsMode::All;
      fb.seqs.push_back(sc);
    }
    EXPECT_EQ(runtime::uniform_tokens_per_seq(ForwardMode::TargetVerify, fb), k);
    auto a = m->forward(fb, plain);
    auto b = rec.forward_padded_eager(ForwardMode::TargetVerify, fb, padded);
    ASSERT_EQ(a.logits.numel(), b.logits.numel());
    ASSERT_EQ(a.logits_row0, b.logits_row0);
    golden::ErrorMeter e;
    e.add(b.logits.f32(), a.logits.f32(), a.logits.numel());
    EXPECT_LT(e.rel(), 1e-6) << "step " << step;
  }
  for (size_t l = 0; l < plain.latent.size(); ++l) {
    golden::ErrorMeter e;
    e.add(padded.latent[l].f32(), plain.latent[l].f32(), plain.latent[l].numel());
    e.add(padded.index_k[l].f32(), plain.index_k[l].f32(), plain.index_k[l].numel());
    EXPECT_EQ(e.max_abs_err, 0.0) << "layer " << l;
  }
}

TEST(StepRecorder, ForwardModes) {
  ForwardBatch fb;
  SequenceChunk one;
  one.tokens = {5};
  SequenceChunk chunk;
  chunk.tokens = {1, 2, 3};
  chunk.logits = LogitsMode::None;
  fb.seqs = {one, one};
  EXPECT_EQ(runtime::classify_step(fb), ForwardMode::Decode);
  EXPECT_EQ(runtime::uniform_tokens_per_seq(ForwardMode::Decode, fb), 1);
  EXPECT_EQ(runtime::uniform_tokens_per_seq(ForwardMode::TargetVerify, fb), 0);  // verify wants every row's logits
  fb.seqs.push_back(chunk);
  EXPECT_EQ(runtime::classify_step(fb), ForwardMode::Mixed);
  EXPECT_EQ(runtime::uniform_tokens_per_seq(ForwardMode::Decode, fb), 0);
  fb.seqs = {chunk};
  EXPECT_EQ(runtime::classify_step(fb), ForwardMode::Extend);
  chunk.logits = LogitsMode::All;
  fb.seqs = {chunk, chunk};
  EXPECT_EQ(runtime::uniform_tokens_per_seq(ForwardMode::TargetVerify, fb), 3);
  EXPECT_EQ(runtime::uniform_tokens_per_seq(ForwardMode::Extend, fb), 0);  // never recorded
}
