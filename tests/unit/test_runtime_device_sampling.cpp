// Building Backend::sample's batch from requests: the row of parameters, and the penalty token lists
// kept up to date incrementally (checked against a recount of the whole history).
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "runtime/device_sampling.h"

using namespace ds;
using namespace ds::runtime;

namespace {
// Recount from scratch: id -> occurrences in the output, for every id the penalties apply to.
std::map<int32_t, int32_t> recount(const std::vector<int32_t>& h, size_t prompt_len, bool with_prompt) {
  std::map<int32_t, int32_t> m;
  for (size_t i = 0; i < h.size(); ++i) {
    if (i >= prompt_len) {
      ++m[h[i]];
    } else if (with_prompt) {
      m[h[i]] += 0;  // present, with no output occurrence
    }
  }
  return m;
}
std::map<int32_t, int32_t> as_map(const PenaltyTokens& p) {
  EXPECT_EQ(p.ids().size(), p.output_counts().size());
  std::map<int32_t, int32_t> m;
  for (size_t i = 0; i < p.ids().size(); ++i) {
    if (i) {
      EXPECT_LT(p.ids()[i - 1], p.ids()[i]) << "ids ascending and distinct";
    }
    m[p.ids()[i]] = p.output_counts()[i];
  }
  return m;
}
}  // namespace

TEST(DeviceSampling, PenaltyTokensGrowLikeARecount) {
  for (bool with_prompt : {true, false}) {
    std::mt19937 rng(with_prompt ? 1 : 2);
    std::vector<int32_t> h;
    const size_t prompt_len = 40;
    for (size_t i = 0; i < prompt_len; ++i) h.push_back(int32_t(rng() % 30));
    PenaltyTokens p;
    p.update(h, prompt_len, with_prompt);
    EXPECT_EQ(as_map(p), recount(h, prompt_len, with_prompt));
    // Output tokens arrive one per step, sometimes several at once (a step missed), with repeats.
    for (int step = 0; step < 60; ++step) {
      const int n = step % 7 == 0 ? 3 : 1;
      for (int k = 0; k < n; ++k) h.push_back(int32_t(rng() % 45));
      p.update(h, prompt_len, with_prompt);
      ASSERT_EQ(as_map(p), recount(h, prompt_len, with_prompt)) << "step " << step;
    }
    p.update(h, prompt_len, with_prompt);  // nothing new: unchanged
    EXPECT_EQ(as_map(p), recount(h, prompt_len, with_prompt));
  }
}

TEST(DeviceSampling, PenaltyTokensOfAPromptOnly) {
  PenaltyTokens p;
  p.update({5, 3, 5, 9}, 4, true);
  EXPECT_EQ(p.ids(), (std::vector<int32_t>{3, 5, 9}));
  EXPECT_EQ(p.output_counts(), (std::vector<int32_t>{0, 0, 0}));
  PenaltyTokens q;
  q.update({5, 3, 5, 9}, 4, false);
  EXPECT_TRUE(q.ids().empty());
  q.update({5, 3, 5, 9, 5, 5, 2}, 4, false);
  EXPECT_EQ(q.ids(), (std::vector<int32_t>{2, 5}));
  EXPECT_EQ(q.output_counts(), (std::vector<int32_t>{1, 2}));
}

TEST(DeviceSampling, RowsCarryTheParametersAndPenaltyRanges) {
  backend::SamplingBatch b;
  SamplingParams greedy;
  greedy.temperature = 1e-7f;  // below the host's greedy threshold: greedy on the device too
  greedy.top_logprobs = 4;     // without logprobs: not asked for
  add_sampling_row(b, 3, greedy, 11, 0, nullptr);

  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.2f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = -0.25f;
  p.logprobs = true;
  p.top_logprobs = 5;
  PenaltyTokens pen;
  pen.update({7, 7, 2, 9, 2}, 3, true);
  add_sampling_row(b, 0, p, 99, 2, &pen);
  SamplingParams no_pen;
  no_pen.temperature = 1.0f;
  add_sampling_row(b, 1, no_pen, 5, 8, &pen);  // a stale list for a request without penalties: ignored
  add_sampling_row(b, 2, p, 100, 3, &pen);

  ASSERT_EQ(b.rows.size(), 4u);
  const auto& g = b.rows[0];
  EXPECT_EQ(g.logits_row, 3);
  EXPECT_EQ(g.temperature, 0.0f);
  EXPECT_FALSE(g.logprobs);
  EXPECT_EQ(g.top_logprobs, 0);
  EXPECT_EQ(g.penalty_count, 0);
  EXPECT_EQ(g.seed, 11u);

  const auto& s = b.rows[1];
  EXPECT_EQ(s.temperature, 0.7f);
  EXPECT_EQ(s.top_k, 50);
  EXPECT_EQ(s.top_p, 0.9f);
  EXPECT_EQ(s.min_p, 0.05f);
  EXPECT_EQ(s.repetition_penalty, 1.2f);
  EXPECT_EQ(s.frequency_penalty, 0.5f);
  EXPECT_EQ(s.presence_penalty, -0.25f);
  EXPECT_TRUE(s.logprobs);
  EXPECT_EQ(s.top_logprobs, 5);
  EXPECT_EQ(s.seed, 99u);
  EXPECT_EQ(s.position, 2u);
  EXPECT_EQ(s.penalty_begin, 0);
  EXPECT_EQ(s.penalty_count, 3);
  EXPECT_EQ(b.rows[2].penalty_count, 0);
  EXPECT_EQ(b.rows[3].penalty_begin, 3);
  EXPECT_EQ(b.rows[3].penalty_count, 3);
  EXPECT_EQ(b.penalty_ids, (std::vector<int32_t>{2, 7, 9, 2, 7, 9}));
  EXPECT_EQ(b.penalty_output_counts, (std::vector<int32_t>{1, 0, 1, 1, 0, 1}));
}

TEST(DeviceSampling, SeedsAreTheRequestsOrTheEnginesStream) {
  SamplingParams p;
  EXPECT_EQ(request_seed(p, 17), 17u);
  p.seed = 3;
  EXPECT_EQ(request_seed(p, 17), 3u);
}
