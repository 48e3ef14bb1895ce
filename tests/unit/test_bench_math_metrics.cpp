// NeMo-Skills' math metrics (pass@1[avg-of-N] ± std across runs, majority@N, pass@N, no_answer)
// on hand-scored samples, and the table ns eval prints.
#include <gtest/gtest.h>

#include "bench/eval_math_metrics.h"
#include "util/error.h"

using namespace ds::bench;

namespace {
MathSample ok(const std::string& a, int tokens = 0) { return {a, true, tokens}; }
MathSample bad(const std::string& a, int tokens = 0) { return {a, false, tokens}; }
MathSample none(int tokens = 0) { return {std::nullopt, false, tokens}; }

// Problem A: 70 70 71 -, problem B: a 2-2 tie, problem C: no answers at all.
std::vector<std::vector<MathSample>> three_problems() {
  return {{ok("70", 100), ok("070", 200), bad("71", 300), none(400)},
          {ok("5", 10), bad("6", 10), bad("6", 10), ok("5", 10)},
          {none(), none(), none(), none()}};
}
}  // namespace

TEST(MathMetrics, PassAverageMajorityPassAtN) {
  MathMetrics m = compute_math_metrics(three_problems(), 12.9);
  EXPECT_EQ(m.num_entries, 3);
  EXPECT_EQ(m.avg_tokens, 86);  // int((250 + 10 + 0) / 3)
  EXPECT_EQ(m.gen_seconds, 12);
  ASSERT_EQ(m.rows.size(), 3u);
  EXPECT_EQ(m.rows[0].mode, "pass@1[avg-of-4]");
  EXPECT_NEAR(m.rows[0].correct_pct, 100.0 / 3, 1e-9);
  ASSERT_TRUE(m.rows[0].correct_std);
  // Runs (sample i of every problem): 2/3, 1/3, 0, 1/3 -> sample std 27.2166%.
  EXPECT_NEAR(*m.rows[0].correct_std, 27.216552697590867, 1e-9);
  EXPECT_NEAR(m.rows[0].no_answer_pct, 100 * (0.25 + 0 + 1) / 3, 1e-9);
  EXPECT_EQ(m.rows[1].mode, "majority@4");
  EXPECT_NEAR(m.rows[1].correct_pct, 50.0, 1e-9);  // A right (70 and 070 vote together), B tie 0.5, C 0
  EXPECT_FALSE(m.rows[1].correct_std);
  EXPECT_NEAR(m.rows[1].no_answer_pct, 100.0 / 3, 1e-9);
  EXPECT_EQ(m.rows[2].mode, "pass@4");
  EXPECT_NEAR(m.rows[2].correct_pct, 200.0 / 3, 1e-9);
  EXPECT_NEAR(m.rows[2].no_answer_pct, 100.0 / 3, 1e-9);
}

TEST(MathMetrics, MajorityIsNotAnyCorrect) {
  // The wrong answer wins the vote although one sample is right; a three-way tie with one right
  // answer scores a third.
  MathMetrics m = compute_math_metrics({{bad("1"), bad("1"), ok("2")}, {bad("1"), ok("2"), bad("3")}}, 0);
  ASSERT_EQ(m.rows.size(), 3u);
  EXPECT_NEAR(m.rows[1].correct_pct, 100 * (0 + 1.0 / 3) / 2, 1e-9);
  EXPECT_NEAR(m.rows[2].correct_pct, 100.0, 1e-9);
  EXPECT_NEAR(m.rows[0].correct_pct, 100 * (1.0 / 3 + 1.0 / 3) / 2, 1e-9);
}

TEST(MathMetrics, OneSampleHasNoMajorityNorStd) {
  MathMetrics m = compute_math_metrics({{ok("1")}, {bad("2")}}, 1);
  ASSERT_EQ(m.rows.size(), 2u);
  EXPECT_EQ(m.rows[0].mode, "pass@1[avg-of-1]");
  EXPECT_FALSE(m.rows[0].correct_std);
  EXPECT_EQ(m.rows[1].mode, "pass@1");
  EXPECT_NEAR(m.rows[1].correct_pct, 50, 1e-9);
}

TEST(MathMetrics, RefusesRaggedInput) {
  EXPECT_THROW(compute_math_metrics({}, 0), ds::Error);
  EXPECT_THROW(compute_math_metrics({{ok("1"), ok("1")}, {ok("1")}}, 0), ds::Error);
}

TEST(MathMetrics, TableAsNsEvalPrintsIt) {
  // The expected text was produced by NeMo-Skills' layout rules in Python (str.center, ljust, " | ").
  std::string want =
      "---------------------------------------- aime25 ----------------------------------------\n"
      "evaluation_mode  | num_entries | avg_tokens | gen_seconds | symbolic_correct | no_answer\n"
      "pass@1[avg-of-4] | 3           | 86         | 12          | 33.33% \xC2\xB1 27.22%  | 41.67%   \n"
      "majority@4       | 3           | 86         | 12          | 50.00%           | 33.33%   \n"
      "pass@4           | 3           | 86         | 12          | 66.67%           | 33.33%   \n";
  EXPECT_EQ(format_math_metrics("aime25", compute_math_metrics(three_problems(), 12.9)), want);
}
