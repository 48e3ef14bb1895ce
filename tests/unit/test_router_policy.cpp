// The router's policies: round_robin's cycle, random's spread, power_of_two's choice of the less
// loaded of two, cache_aware's prefix affinity, smallest-tree fallback and balance thresholds, and
// the routing text taken from each endpoint's body.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "router/policies.h"
#include "router/routing_text.h"
#include "util/error.h"

using namespace ds::router;

namespace {
std::vector<Candidate> all(std::vector<size_t> loads) {
  std::vector<Candidate> c;
  for (size_t i = 0; i < loads.size(); ++i) c.push_back({i, loads[i]});
  return c;
}
}  // namespace

TEST(RouterPolicy, RoundRobinCyclesAndSkipsMissingWorkers) {
  RoundRobinPolicy p(3);
  std::vector<size_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(p.select(all({0, 0, 0}), ""));
  EXPECT_EQ(got, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
  // Worker 1 out of rotation: 0 and 2 alternate.
  std::vector<Candidate> without1{{0, 0}, {2, 0}};
  got.clear();
  for (int i = 0; i < 4; ++i) got.push_back(p.select(without1, ""));
  EXPECT_EQ(got, (std::vector<size_t>{0, 2, 0, 2}));
}

TEST(RouterPolicy, RandomReachesEveryCandidate) {
  RandomPolicy p(42);
  std::map<size_t, int> n;
  std::vector<Candidate> c{{1, 0}, {3, 0}, {4, 0}};
  for (int i = 0; i < 3000; ++i) ++n[p.select(c, "")];
  ASSERT_EQ(n.size(), 3u);
  for (auto [w, k] : n) {
    EXPECT_TRUE(w == 1 || w == 3 || w == 4);
    EXPECT_NEAR(k, 1000, 150) << "worker " << w;
  }
}

TEST(RouterPolicy, PowerOfTwoTakesTheLessLoadedOfTwo) {
  PowerOfTwoPolicy p(3);
  // Two candidates: always the less loaded.
  for (int i = 0; i < 100; ++i) EXPECT_EQ(p.select({{0, 5}, {1, 2}}, ""), 1u);
  // Three: the most loaded can never win (it would have to be drawn twice).
  std::map<size_t, int> n;
  for (int i = 0; i < 3000; ++i) ++n[p.select(all({1, 9, 4}), "")];
  EXPECT_EQ(n[1], 0);
  // Worker 0 wins whenever drawn (2 of the 3 pairs), worker 2 only against worker 1.
  EXPECT_NEAR(n[0], 2000, 150);
  EXPECT_NEAR(n[2], 1000, 150);
  EXPECT_EQ(p.select({{7, 100}}, ""), 7u);
}

TEST(RouterPolicy, CacheAwareFollowsThePrefix) {
  PolicyConfig cfg;  // sglang's defaults: cache_threshold 0.3, abs 64, rel 1.5
  CacheAwarePolicy p(cfg, 3);
  const std::string sys_a = "You are a helpful assistant for chemistry questions. ";
  const std::string sys_b = "Translate everything the user says into French, politely. ";
  // Empty trees: the smallest tree (all equal) -> the first, then the next smallest.
  const size_t wa = p.select(all({0, 0, 0}), sys_a + "What is water?");
  const size_t wb = p.select(all({0, 0, 0}), sys_b + "Good morning");
  EXPECT_NE(wa, wb);
  EXPECT_EQ(p.cache_misses(), 2u);
  // Same system prompts again: each goes where its prefix is, loads being balanced.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(p.select(all({1, 1, 1}), sys_a + "Question " + std::to_string(i)), wa);
    EXPECT_EQ(p.select(all({1, 1, 1}), sys_b + "Sentence " + std::to_string(i)), wb);
  }
  EXPECT_EQ(p.cache_hits(), 10u);
  // A text with no cached prefix goes to the worker with the smallest tree: the third one.
  const size_t wc = p.select(all({0, 0, 0}), "Something new entirely, unrelated to both.");
  EXPECT_NE(wc, wa);
  EXPECT_NE(wc, wb);
  EXPECT_GT(p.tree(wc).size(), 0u);
}

TEST(RouterPolicy, CacheAwareThresholdIsAShareOfTheText) {
  PolicyConfig cfg;
  cfg.cache_threshold = 0.5;
  CacheAwarePolicy p(cfg, 2);
  EXPECT_EQ(p.select(all({0, 0}), "abcdefghij"), 0u);  // miss: tree 0 (first smallest)
  // 4 of 10 bytes match worker 0 (40% <= 50%): a miss, to the smallest tree (worker 1).
  EXPECT_EQ(p.select(all({0, 0}), "abcdXXXXXX"), 1u);
  // 6 of 10 match worker 0 (60% > 50%): a hit.
  EXPECT_EQ(p.select(all({0, 0}), "abcdefYYYY"), 0u);
  EXPECT_EQ(p.cache_hits(), 1u);
  EXPECT_EQ(p.cache_misses(), 2u);
}

TEST(RouterPolicy, CacheAwareBalancesOnlyBeyondBothThresholds) {
  PolicyConfig cfg;
  cfg.balance_abs_threshold = 4;
  cfg.balance_rel_threshold = 2.0;
  CacheAwarePolicy p(cfg, 2);
  const std::string text = "the shared prefix of every request, long enough";
  ASSERT_EQ(p.select(all({0, 0}), text), 0u);
  // Worker 0 holds the prefix. Differences within a threshold: the prefix wins.
  EXPECT_EQ(p.select(all({4, 0}), text), 0u);   // max-min = 4, not > 4
  EXPECT_EQ(p.select(all({9, 5}), text), 0u);   // 9-5 = 4, not > 4
  EXPECT_EQ(p.select(all({11, 6}), text), 0u);  // 5 > 4 but 11 <= 6*2
  EXPECT_EQ(p.balancing_events(), 0u);
  // Both exceeded: the least loaded, whatever the cache says; the text joins its tree.
  EXPECT_EQ(p.select(all({13, 6}), text), 1u);
  EXPECT_EQ(p.balancing_events(), 1u);
  EXPECT_EQ(p.tree(1).match(text), text.size());
}

TEST(RouterPolicy, CacheAwareEvictionTrimsEveryTree) {
  PolicyConfig cfg;
  cfg.max_tree_size = 30;
  CacheAwarePolicy p(cfg, 2);
  for (int i = 0; i < 20; ++i) p.select(all({0, 0}), "request number " + std::to_string(i) + " with some text");
  EXPECT_GT(p.tree(0).size() + p.tree(1).size(), 60u);
  p.evict();
  EXPECT_LE(p.tree(0).size(), 30u);
  EXPECT_LE(p.tree(1).size(), 30u);
}

TEST(RouterPolicy, MakePolicyByName) {
  PolicyConfig cfg;
  for (const char* name : {"round_robin", "random", "cache_aware", "power_of_two"}) {
    cfg.name = name;
    EXPECT_STREQ(make_policy(cfg, 2)->name(), name);
  }
  cfg.name = "least_load";
  EXPECT_THROW(make_policy(cfg, 2), ds::Error);
}

TEST(RouterText, TakesThePromptOfEachEndpoint) {
  EXPECT_EQ(routing_text("/v1/chat/completions",
                         R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":[{"type":"text","text":"U"}]}]})"),
            "system: S\nuser: U\n");
  EXPECT_EQ(routing_text("/v1/completions", R"({"prompt":"once upon"})"), "once upon");
  EXPECT_EQ(routing_text("/v1/completions", R"({"prompt":["a","b"]})"), "ab");
  EXPECT_EQ(routing_text("/generate", R"({"text":"The capital","sampling_params":{}})"), "The capital");
  EXPECT_EQ(routing_text("/generate", R"({"input_ids":[1,2,3]})"), "1 2 3 ");
  EXPECT_EQ(routing_text("/v1/responses", R"({"instructions":"I","input":"hello"})"), "I\nhello");
  EXPECT_EQ(routing_text("/v1/responses", R"({"input":[{"role":"user","content":"hi"}]})"), "user: hi\n");
  // A growing conversation keeps its earlier turns as a prefix.
  const std::string one = routing_text("/v1/chat/completions", R"({"messages":[{"role":"user","content":"a"}]})");
  const std::string two = routing_text(
      "/v1/chat/completions",
      R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]})");
  EXPECT_TRUE(two.starts_with(one));
  // Bodies the worker will refuse: no text, no exception.
  EXPECT_EQ(routing_text("/v1/chat/completions", "{not json"), "");
  EXPECT_EQ(routing_text("/v1/chat/completions", R"({"messages":"nope"})"), "");
  EXPECT_EQ(routing_text("/generate", R"([1,2])"), "");
}
