#include <gtest/gtest.h>

#include "runtime/forced_continuation.h"
#include "util/error.h"

using ds::runtime::ContinuationTracker;
using ds::runtime::ForcedContinuation;
using V = std::vector<int32_t>;

namespace {
// Feeds `tokens` to the tracker as generated output after `prompt`, returning what was allowed before each.
std::vector<V> walk(ContinuationTracker& t, const V& tokens, const V& prompt = {7, 7}) {
  std::vector<V> seen;
  V hist = prompt;
  for (int32_t tok : tokens) {
    seen.push_back(t.allowed());
    hist.push_back(tok);
    t.accept(tok, hist, prompt.size());
  }
  return seen;
}
}  // namespace

TEST(ForcedContinuation, ActiveAtOnceWithoutTrigger) {
  ContinuationTracker t(ForcedContinuation{{}, {{5, 6, 7}}});
  EXPECT_TRUE(t.constraining());
  auto seen = walk(t, {5, 6, 7, 9});
  EXPECT_EQ(seen, (std::vector<V>{{5}, {6}, {7}, {}}));  // free again after the alternative
  EXPECT_TRUE(t.done());
}

TEST(ForcedContinuation, WaitsForTheTriggerAtTheEndOfTheOutput) {
  ContinuationTracker t(ForcedContinuation{{1, 2}, {{5}}});
  EXPECT_FALSE(t.constraining());
  // 2 alone, or 1 then 3, is not the trigger; 1, 2 is.
  auto seen = walk(t, {2, 1, 3, 1, 2, 5, 2});
  EXPECT_EQ(seen, (std::vector<V>{{}, {}, {}, {}, {}, {5}, {}}));
  EXPECT_TRUE(t.done());
  // A trigger that straddles the prompt's end is not in the output.
  ContinuationTracker p(ForcedContinuation{{1, 2}, {{5}}});
  walk(p, {2, 3}, {9, 1});
  EXPECT_FALSE(p.constraining());
}

TEST(ForcedContinuation, AlternativesBranchWhereTheyDiffer) {
  // Three tool names sharing a prefix: 10 11 {20 | 21 {30 | 31}} 99.
  ContinuationTracker t(ForcedContinuation{{}, {{10, 11, 20, 99}, {10, 11, 21, 30, 99}, {10, 11, 21, 31, 99}}});
  auto seen = walk(t, {10, 11, 21, 31, 99});
  EXPECT_EQ(seen, (std::vector<V>{{10}, {11}, {20, 21}, {30, 31}, {99}}));
  EXPECT_TRUE(t.done());
  ContinuationTracker u(ForcedContinuation{{}, {{10, 11, 20, 99}, {10, 11, 21, 30, 99}}});
  V hist = {10};
  u.accept(10, hist, 0);
  hist.push_back(12);
  EXPECT_THROW(u.accept(12, hist, 0), ds::Error);  // the engine never samples outside allowed()
}

TEST(ForcedContinuation, RefusesAmbiguousAlternatives) {
  EXPECT_THROW(ContinuationTracker(ForcedContinuation{{}, {{1, 2}, {1, 2, 3}}}), ds::Error);
  EXPECT_THROW(ContinuationTracker(ForcedContinuation{{}, {{1, 2, 3}, {1, 2}}}), ds::Error);
  EXPECT_THROW(ContinuationTracker(ForcedContinuation{{}, {{1}, {}}}), ds::Error);
  EXPECT_THROW(ContinuationTracker(ForcedContinuation{{}, {}}), ds::Error);
  ContinuationTracker same(ForcedContinuation{{}, {{1, 2}, {1, 3}}});  // siblings are fine
  EXPECT_EQ(same.allowed(), V{1});
}
