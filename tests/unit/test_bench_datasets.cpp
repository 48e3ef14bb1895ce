// Dataset construction with a stand-in tokenizer: requested lengths, ShareGPT filtering.
#include <gtest/gtest.h>

#include "bench/datasets.h"
#include "bench_fakes.h"
#include "util/error.h"

using namespace ds::bench;

namespace {
const std::string kShareGpt = std::string(DS_SOURCE_DIR) + "/tests/fixtures/bench/sharegpt_small.json";
}

TEST(BenchDatasets, RandomLensRange) {
  std::mt19937_64 rng(1);
  for (int x : random_lens(100, 0.5, 200, rng)) EXPECT_TRUE(x >= 50 && x <= 100) << x;
  for (int x : random_lens(10, 0.0, 50, rng)) EXPECT_TRUE(x >= 1 && x <= 10) << x;  // max(int(0), 1)
  auto fixed = random_lens(7, 1.0, 5, rng);
  EXPECT_EQ(fixed, std::vector<int>(5, 7));
}

TEST(BenchDatasets, RandomIdsHaveRequestedTokenCounts) {
  ds::bench::testing::WordTokenizer tok;
  DatasetOptions o;
  o.name = "random-ids";
  o.num_prompts = 20;
  o.random_input_len = 30;
  o.random_output_len = 8;
  o.random_range_ratio = 0.5;
  std::mt19937_64 rng(1);
  auto rows = load_dataset(o, &tok, rng);
  ASSERT_EQ(rows.size(), 20u);
  for (const auto& r : rows) {
    EXPECT_EQ(static_cast<int>(tok.encode(r.prompt).size()), r.prompt_len);
    EXPECT_TRUE(r.prompt_len >= 15 && r.prompt_len <= 30);
    EXPECT_TRUE(r.output_len >= 4 && r.output_len <= 8);
  }
}

TEST(BenchDatasets, RandomFromShareGptCutsAndRepeats) {
  ds::bench::testing::WordTokenizer tok;
  DatasetOptions o;
  o.name = "random";
  o.path = kShareGpt;
  o.num_prompts = 8;
  o.random_input_len = 40;  // longer than the prompts: their ids are repeated
  o.random_range_ratio = 1.0;
  std::mt19937_64 rng(3);
  auto rows = load_dataset(o, &tok, rng);
  ASSERT_EQ(rows.size(), 8u);
  for (const auto& r : rows) EXPECT_EQ(tok.encode(r.prompt).size(), 40u);
}

TEST(BenchDatasets, ShareGptFiltersAndCounts) {
  ds::bench::testing::WordTokenizer tok;
  DatasetOptions o;
  o.path = kShareGpt;
  o.num_prompts = 100;
  std::mt19937_64 rng(1);
  auto rows = load_dataset(o, &tok, rng);
  EXPECT_EQ(rows.size(), 8u);  // the one-turn conversation is dropped
  for (const auto& r : rows) EXPECT_EQ(static_cast<int>(tok.encode(r.prompt).size()), r.prompt_len);
  o.sharegpt_context_len = 20;  // prompt (12 words) + answer (>= 6 words) must fit
  rows = load_dataset(o, &tok, rng);
  for (const auto& r : rows) EXPECT_LE(r.prompt_len + r.output_len, 20);
  o.sharegpt_output_len = 3;
  EXPECT_THROW(load_dataset(o, &tok, rng), ds::Error);  // "output_len too small", as sglang
}

TEST(BenchDatasets, SharedPrefixGroups) {
  ds::bench::testing::WordTokenizer tok;
  DatasetOptions o;
  o.name = "generated-shared-prefix";
  o.gsp_num_groups = 3;
  o.gsp_prompts_per_group = 4;
  o.gsp_system_prompt_len = 10;
  o.gsp_question_len = 5;
  o.gsp_output_len = 7;
  std::mt19937_64 rng(1);
  auto rows = load_dataset(o, &tok, rng);
  ASSERT_EQ(rows.size(), 12u);
  for (const auto& r : rows) {
    EXPECT_EQ(r.prompt_len, 15);
    EXPECT_EQ(r.output_len, 7);
    EXPECT_NE(r.prompt.find("\n\n"), std::string::npos);
  }
}

TEST(BenchDatasets, NeedsTokenizerForSyntheticData) {
  DatasetOptions o;
  o.name = "random-ids";
  std::mt19937_64 rng(1);
  EXPECT_THROW(load_dataset(o, nullptr, rng), ds::Error);
}
