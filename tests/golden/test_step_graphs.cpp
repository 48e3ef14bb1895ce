// model/step_graphs on the CPU backend (which cannot record steps, so nothing is captured): the buckets,
// and the padded, context-capped decode step a recording is made of, run op by op, against the plain
// forward on the tiny DeepSeek-V3.2 checkpoint. Padding rows write nothing and change no real row.
#include <gtest/gtest.h>

#include <random>

#include "golden_util.h"
#include "model/step_graphs.h"

using namespace ds;
using namespace ds::model;

TEST(StepGraphs, BatchBuckets) {
  const std::vector<std::pair<int32_t, int32_t>> want = {{1, 1},   {2, 2},   {3, 4},    {5, 8},    {8, 8},
                                                         {9, 16},  {17, 24}, {64, 64},  {65, 80},  {250, 256},
                                                         {257, 288}, {300, 320}};
  for (auto [n, b] : want) EXPECT_EQ(StepGraphs::batch_bucket(n, 512), b) << n;
  EXPECT_EQ(StepGraphs::batch_bucket(100, 100), 100);  // capped at max_bs
  EXPECT_EQ(StepGraphs::batch_bucket(7, 6 + 1), 7);
  EXPECT_THROW(StepGraphs::batch_bucket(9, 8), Error);
  EXPECT_THROW(StepGraphs::batch_bucket(0, 8), Error);
}

TEST(StepGraphs, ContextBuckets) {
  EXPECT_EQ(StepGraphs::context_bucket(1, 163840), 256);
  EXPECT_EQ(StepGraphs::context_bucket(256, 163840), 256);
  EXPECT_EQ(StepGraphs::context_bucket(257, 163840), 512);
  EXPECT_EQ(StepGraphs::context_bucket(70000, 163840), 131072);
  EXPECT_EQ(StepGraphs::context_bucket(140000, 163840), 163840);  // capped at the model's limit
  EXPECT_EQ(StepGraphs::context_bucket(200000, 163840), 262144);  // beyond it: still covers the context
  EXPECT_EQ(StepGraphs::context_bucket(100, 0), 256);
}

TEST(StepGraphs, PaddedCappedStepEqualsPlainForward) {
  auto be = backend::make_cpu_backend(2);
  ModelOptions o;
  o.cuda_graph_max_bs = 8;
  auto m = Model::load(golden::fixture("tiny_v32_fp8"), *be, o);
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
    auto b = m->step_graphs().forward_padded_eager(fb, padded);         // padded to 1 / 2 / 4 rows, capped
    ASSERT_EQ(a.logits.numel(), b.logits.numel());
    ASSERT_EQ(a.logits_row0, b.logits_row0);
    golden::ErrorMeter e;
    e.add(b.logits.f32(), a.logits.f32(), a.logits.numel());
    EXPECT_LT(e.rel(), 1e-6) << "step " << step;
  }
  EXPECT_EQ(m->step_graphs().stats().captured, 0);
  // The padding rows wrote nothing: both caches hold the same rows.
  for (size_t l = 0; l < plain.latent.size(); ++l) {
    golden::ErrorMeter e;
    e.add(padded.latent[l].f32(), plain.latent[l].f32(), plain.latent[l].numel());
    e.add(padded.index_k[l].f32(), plain.index_k[l].f32(), plain.index_k[l].numel());
    EXPECT_EQ(e.max_abs_err, 0.0) << "layer " << l;
  }
}
