// The scheduler on its own: simulated steps (no model), checking page accounting, retraction,
// chunking and shared-prefix reuse.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "runtime/scheduler.h"

using namespace ds::runtime;

namespace {

std::unique_ptr<RequestState> make_req(const std::string& id, std::vector<int32_t> prompt, int32_t max_new) {
  auto r = std::make_unique<RequestState>();
  r->in.id = id;
  r->in.prompt = prompt;
  r->in.max_new_tokens = max_new;
  r->tokens = std::move(prompt);
  r->prompt_len = int32_t(r->tokens.size());
  return r;
}

EngineConfig config(int32_t page_size, int64_t total_tokens) {
  EngineConfig c;
  c.page_size = page_size;
  c.max_total_tokens = total_tokens;
  c.context_length = 1 << 20;
  return c;
}

// Runs one planned step: checks each chunk's pages, "computes" it, samples token 7 + output length.
// Returns the requests that finished.
std::vector<std::unique_ptr<RequestState>> simulate_step(Scheduler& s, std::map<std::string, int>& sampled) {
  auto plan = s.schedule();
  std::vector<std::unique_ptr<RequestState>> done;
  std::set<RequestState*> seen;
  for (const auto& c : plan) {
    EXPECT_TRUE(seen.insert(c.req).second) << "a request twice in one step";
    EXPECT_EQ(c.begin, c.req->computed);
    EXPECT_GE(int64_t(c.req->pages.size()) * s.pool().page_size(), c.begin + c.len) << "pages do not cover the chunk";
    for (int32_t p : c.req->pages) EXPECT_GE(s.pool().ref_count(p), 1);
  }
  std::vector<RequestState*> finished;
  for (const auto& c : plan) {
    s.chunk_done(*c.req, c.len);
    if (c.logits) {
      c.req->tokens.push_back(1000 + c.req->output_len());
      ++sampled[c.req->in.id];
      if (c.req->output_len() >= c.req->in.max_new_tokens) finished.push_back(c.req);
    }
  }
  for (auto* r : finished) done.push_back(s.finish(*r));
  return done;
}

}  // namespace

TEST(Scheduler, ChunkedPrefillThenDecode) {
  EngineConfig c = config(4, 64);
  c.chunked_prefill_size = 5;
  Scheduler s(c, 16);
  std::vector<int32_t> prompt(12);
  for (int i = 0; i < 12; ++i) prompt[i] = i;
  s.add(make_req("a", prompt, 3));
  std::vector<int32_t> lens;
  std::map<std::string, int> sampled;
  int steps = 0;
  while (s.num_running() + s.num_waiting() > 0 && steps < 100) {
    auto plan = s.schedule();
    ASSERT_EQ(plan.size(), 1u);
    lens.push_back(plan[0].len);
    s.chunk_done(*plan[0].req, plan[0].len);
    if (plan[0].logits) {
      plan[0].req->tokens.push_back(99);
      if (plan[0].req->output_len() == 3) s.finish(*plan[0].req);
    }
    ++steps;
  }
  EXPECT_EQ(lens, (std::vector<int32_t>{5, 5, 2, 1, 1}));
  // Everything computed is cached: 14 tokens -> 3 whole pages stay, the rest is free.
  EXPECT_EQ(s.pool().num_used(), s.cache()->cached_pages());
  EXPECT_EQ(s.cache()->cached_pages(), 3);
}

TEST(Scheduler, SharedPrefixIsComputedOnce) {
  Scheduler s(config(4, 256), 64);
  std::vector<int32_t> prompt(41);
  for (int i = 0; i < 41; ++i) prompt[i] = i;
  for (int i = 0; i < 3; ++i) s.add(make_req("r" + std::to_string(i), prompt, 1));
  auto first = s.schedule();
  ASSERT_EQ(first.size(), 1u) << "the copies wait for the first prefill";
  EXPECT_EQ(first[0].len, 41);
  s.chunk_done(*first[0].req, 41);
  first[0].req->tokens.push_back(5);
  s.finish(*first[0].req);
  auto second = s.schedule();
  ASSERT_EQ(second.size(), 2u);
  for (const auto& c : second) {
    EXPECT_EQ(c.begin, 40) << "40 of the 41 prompt tokens come from the cache";
    EXPECT_EQ(c.req->cached_tokens, 40);
  }
}

TEST(Scheduler, RetractsUnderPressureAndFinishesEverything) {
  // 12 pages of 4 tokens; 10 requests needing 5..8 pages each: most of them cannot coexist.
  for (bool radix : {true, false}) {
    EngineConfig c = config(4, 48);
    c.enable_radix_cache = radix;
    Scheduler s(c, 12);
    std::mt19937 rng(7);
    std::map<std::string, int> want, sampled;
    for (int i = 0; i < 10; ++i) {
      std::vector<int32_t> prompt(6 + rng() % 10);
      for (auto& t : prompt) t = int32_t(rng() % 50);
      const int32_t max_new = 8 + int32_t(rng() % 12);
      want["q" + std::to_string(i)] = max_new;
      s.add(make_req("q" + std::to_string(i), prompt, max_new));
    }
    int steps = 0, finished = 0;
    while (s.num_running() + s.num_waiting() > 0 && steps < 2000) {
      for (auto& r : simulate_step(s, sampled)) {
        ++finished;
        EXPECT_EQ(r->output_len(), want[r->in.id]);
        EXPECT_TRUE(r->pages.empty());
      }
      ++steps;
      const int32_t cached = s.cache() ? s.cache()->cached_pages() : 0;
      EXPECT_LE(s.pool().num_used(), s.pool().num_pages());
      EXPECT_GE(s.pool().num_used(), cached);
    }
    EXPECT_EQ(finished, 10) << "radix=" << radix;
    EXPECT_GT(s.retractions(), 0) << "the pool was meant to be too small for all of them";
    const int32_t cached = s.cache() ? s.cache()->cached_pages() : 0;
    EXPECT_EQ(s.pool().num_used(), cached) << "pages leaked";
    // A retracted request resumes where it was: it samples exactly max_new tokens in total.
    for (auto& [id, n] : sampled) EXPECT_EQ(n, want[id]) << id;
  }
}

TEST(Scheduler, RemoveFreesPagesAndRespectsMaxRunning) {
  EngineConfig c = config(4, 64);
  c.max_running_requests = 2;
  c.enable_radix_cache = false;
  Scheduler s(c, 16);
  for (int i = 0; i < 3; ++i) s.add(make_req("x" + std::to_string(i), {i, 2, 3, 4, 5, 6}, 4));
  auto plan = s.schedule();
  EXPECT_EQ(plan.size(), 2u);
  EXPECT_EQ(s.num_waiting(), 1);
  auto r = s.remove("x0");
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->pages.empty());
  EXPECT_EQ(s.remove("nope"), nullptr);
  auto all = s.take_all();
  EXPECT_EQ(all.size(), 2u);
  EXPECT_EQ(s.pool().num_used(), 0);
}

TEST(Scheduler, PrefillsShortOfPagesNeverStall) {
  // Two long prompts in a pool that cannot hold both, at several chunk sizes: they must both finish
  // in bounded steps (shorter chunks when pages are short, retraction). The admission reserve keeps
  // the all-prefills-stuck state out of reach here; schedule() still retracts if it ever occurs.
  for (int32_t chunk : {3, 7, 16, -1}) {
    EngineConfig c = config(2, 24);
    c.chunked_prefill_size = chunk;
    c.max_prefill_tokens = 32;
    c.enable_radix_cache = false;
    Scheduler s(c, 12);
    std::vector<int32_t> a(20), b(20);
    for (int i = 0; i < 20; ++i) a[i] = i, b[i] = 100 + i;
    s.add(make_req("short", {1, 2}, 2));
    s.add(make_req("a", a, 3));
    s.add(make_req("b", b, 3));
    std::map<std::string, int> sampled;
    int steps = 0, finished = 0;
    while (s.num_running() + s.num_waiting() > 0 && steps < 500) {
      finished += int(simulate_step(s, sampled).size());
      ++steps;
    }
    EXPECT_EQ(finished, 3) << "chunk " << chunk;
    EXPECT_EQ(s.pool().num_used(), 0);
  }
}

// Speculative tokens (RequestState::draft) are never computed, cached or kept: the radix cache holds only
// what a request accepted, and a request that leaves the batch (finish, retraction) drops its drafts.
TEST(Scheduler, DraftTokensNeverReachTheCache) {
  Scheduler s(config(4, 64), 16);
  std::map<std::string, int> sampled;
  s.add(make_req("a", {1, 2, 3, 4, 5, 6, 7, 8, 9}, 100));
  simulate_step(s, sampled);  // prefill + first token
  simulate_step(s, sampled);  // one decode
  auto plan = s.schedule();
  ASSERT_EQ(plan.size(), 1u);
  RequestState& r = *plan[0].req;
  s.chunk_done(r, plan[0].len);
  r.tokens.push_back(42);
  r.draft = {77, 78, 79, 80, 81, 82, 83};  // proposals past the accepted tokens, reaching a new page
  const int32_t computed = r.computed;  // the accepted tokens whose KV exists
  ASSERT_GE(computed, 8);
  auto done = s.finish(r);
  EXPECT_TRUE(done->draft.empty());
  // The cache holds the computed prefix in whole pages, nothing of the drafts (which would add pages).
  EXPECT_EQ(s.cache()->cached_pages(), computed / 4);
}
