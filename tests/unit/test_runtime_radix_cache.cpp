#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "runtime/page_pool.h"
#include "runtime/radix_cache.h"
#include "util/error.h"

using ds::runtime::PagePool;
using ds::runtime::RadixCache;

namespace {

std::vector<int32_t> seq(int32_t from, int32_t n) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = from + i;
  return v;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A finished request: pages allocated for its tokens, inserted, then its own references dropped.
std::vector<int32_t> cache_request(PagePool& pool, RadixCache& cache, const std::vector<int32_t>& tokens) {
  auto m = cache.match_prefix(tokens);
  pool.retain(m.pages);
  cache.lock(m.node);
  auto fresh = *pool.allocate(pool.pages_for(tokens.size()) - static_cast<int32_t>(m.pages.size()));
  auto table = concat(m.pages, fresh);
  auto ins = cache.insert(tokens, table);
  cache.unlock(m.node);
  pool.release(table);
  return ins.pages;
}

}  // namespace

TEST(RadixCache, MatchesWholePagesOnly) {
  PagePool pool(16, 4);
  RadixCache cache(pool);
  auto tokens = seq(100, 10);  // 2 whole pages + 2 tokens
  auto pages = *pool.allocate(3);
  auto ins = cache.insert(tokens, pages);
  EXPECT_EQ(ins.already_cached_tokens, 0);
  EXPECT_TRUE(ins.duplicates.empty());
  EXPECT_EQ(ins.pages, (std::vector<int32_t>{pages[0], pages[1]}));
  EXPECT_EQ(cache.cached_pages(), 2);  // the partial tail is not cached
  EXPECT_EQ(pool.ref_count(pages[0]), 2);
  EXPECT_EQ(pool.ref_count(pages[2]), 1);

  auto m = cache.match_prefix(tokens);
  EXPECT_EQ(m.num_tokens, 8);
  EXPECT_EQ(m.pages, ins.pages);
  // A prefix ending mid-page matches only its whole pages.
  m = cache.match_prefix(seq(100, 7));
  EXPECT_EQ(m.num_tokens, 4);
  EXPECT_EQ(m.pages, (std::vector<int32_t>{pages[0]}));
  // Divergence inside the second page.
  auto other = seq(100, 8);
  other[6] = 1;
  m = cache.match_prefix(other);
  EXPECT_EQ(m.num_tokens, 4);
  // Divergence in the first page: nothing.
  m = cache.match_prefix(seq(101, 8));
  EXPECT_EQ(m.num_tokens, 0);
  EXPECT_TRUE(m.pages.empty());
  EXPECT_EQ(cache.hit_tokens(), 8 + 4 + 4);
  EXPECT_EQ(cache.queried_tokens(), 10 + 7 + 8 + 8);

  pool.release(pages);
  EXPECT_EQ(pool.num_used(), 2);
  cache.reset();
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_EQ(cache.cached_pages(), 0);
  EXPECT_EQ(cache.match_prefix(tokens).num_tokens, 0);
}

TEST(RadixCache, InsertReportsDuplicatesAndSplits) {
  PagePool pool(16, 2);
  RadixCache cache(pool);
  auto a = *pool.allocate(3);
  cache.insert(seq(0, 6), a);
  // Same first page and a different second page, computed into the caller's own pages.
  auto tokens = seq(0, 6);
  tokens[3] = 99;
  auto b = *pool.allocate(3);
  auto ins = cache.insert(tokens, b);
  EXPECT_EQ(ins.already_cached_tokens, 2);
  EXPECT_EQ(ins.duplicates, (std::vector<int32_t>{b[0]}));
  EXPECT_EQ(ins.pages, (std::vector<int32_t>{a[0], b[1], b[2]}));
  EXPECT_EQ(cache.cached_pages(), 5);
  EXPECT_EQ(pool.ref_count(b[0]), 1);  // the duplicate was not taken

  // Both branches still match after the split.
  EXPECT_EQ(cache.match_prefix(seq(0, 6)).pages, a);
  EXPECT_EQ(cache.match_prefix(tokens).pages, ins.pages);
  // Re-inserting with the cached pages themselves reports no duplicates.
  auto again = cache.insert(seq(0, 6), a);
  EXPECT_EQ(again.already_cached_tokens, 6);
  EXPECT_TRUE(again.duplicates.empty());
  EXPECT_EQ(cache.cached_pages(), 5);

  pool.release(a);
  pool.release(b);
  EXPECT_EQ(pool.num_used(), 5);
  cache.reset();
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(RadixCache, InsertNeedsPagesForWholePages) {
  PagePool pool(4, 2);
  RadixCache cache(pool);
  auto a = *pool.allocate(1);
  EXPECT_THROW(cache.insert(seq(0, 4), a), ds::Error);
  EXPECT_EQ(cache.cached_pages(), 0);
  EXPECT_NO_THROW(cache.insert(seq(0, 3), a));
  EXPECT_EQ(cache.cached_pages(), 1);
}

TEST(RadixCache, EvictsLeastRecentlyUsedLeavesFirst) {
  PagePool pool(32, 1);
  RadixCache cache(pool);
  // A shared prefix [0,1] with three branches inserted in order, then branch B touched.
  cache_request(pool, cache, {0, 1, 10, 11});  // A
  cache_request(pool, cache, {0, 1, 20, 21});  // B
  cache_request(pool, cache, {0, 1, 30});      // C
  EXPECT_EQ(cache.cached_pages(), 7);
  cache.match_prefix(std::vector<int32_t>{0, 1, 10, 11});  // A most recent now

  auto dropped = cache.evict(1);  // B is the oldest leaf: its whole node goes
  EXPECT_EQ(dropped.size(), 2u);
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>{0, 1, 20, 21}).num_tokens, 2);
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>{0, 1, 30}).num_tokens, 3);
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>{0, 1, 10, 11}).num_tokens, 4);
  EXPECT_EQ(pool.num_used(), 5);

  dropped = cache.evict(1);  // C was touched before A
  EXPECT_EQ(dropped.size(), 1u);
  EXPECT_EQ(cache.match_prefix(std::vector<int32_t>{0, 1, 30}).num_tokens, 2);
  // Once a parent loses its last child it becomes a leaf and can go too.
  dropped = cache.evict(100);
  EXPECT_EQ(dropped.size(), 4u);
  EXPECT_EQ(cache.cached_pages(), 0);
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(RadixCache, LockedPrefixesAreNeverEvicted) {
  PagePool pool(32, 2);
  RadixCache cache(pool);
  cache_request(pool, cache, seq(0, 8));
  cache_request(pool, cache, concat(seq(0, 4), seq(50, 4)));
  EXPECT_EQ(cache.cached_pages(), 6);

  // A running request uses the first branch.
  auto m = cache.match_prefix(seq(0, 8));
  ASSERT_EQ(m.num_tokens, 8);
  pool.retain(m.pages);
  cache.lock(m.node);
  EXPECT_EQ(cache.locked_pages(), 4);
  EXPECT_EQ(cache.evictable_pages(), 2);
  EXPECT_THROW(cache.reset(), ds::Error);

  auto dropped = cache.evict(100);
  EXPECT_EQ(dropped.size(), 2u);  // only the other branch
  EXPECT_EQ(cache.cached_pages(), 4);
  EXPECT_EQ(cache.match_prefix(seq(0, 8)).num_tokens, 8);

  // A lock taken on a node that a later match splits still protects the whole path.
  auto mid = cache.match_prefix(seq(0, 4));
  EXPECT_EQ(mid.num_tokens, 4);
  EXPECT_EQ(cache.evict(100).size(), 0u);
  EXPECT_EQ(cache.locked_pages(), 4);

  cache.unlock(m.node);
  EXPECT_EQ(cache.locked_pages(), 0);
  EXPECT_THROW(cache.unlock(m.node), ds::Error);
  pool.release(m.pages);
  EXPECT_EQ(cache.evict(100).size(), 4u);
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(RadixCache, EvictingPagesARequestStillHoldsFreesNothingUntilItLeaves) {
  PagePool pool(8, 1);
  RadixCache cache(pool);
  auto pages = *pool.allocate(3);
  cache.insert(std::vector<int32_t>{1, 2, 3}, pages);
  EXPECT_EQ(cache.evict(3).size(), 3u);  // not locked: the cache lets go
  EXPECT_EQ(pool.num_used(), 3);         // but the request still holds them
  pool.release(pages);
  EXPECT_EQ(pool.num_used(), 0);
}

// Many requests with shared prefixes, random evictions and flushes: the pool's counts always equal
// the cache's references plus the running requests' references.
TEST(RadixCache, RandomizedInvariants) {
  for (int32_t page_size : {1, 3, 4}) {
    PagePool pool(200, page_size);
    RadixCache cache(pool);
    std::mt19937_64 rng(1234 + page_size);
    struct Running {
      std::vector<int32_t> tokens, table;
      RadixCache::Node* node;
    };
    std::vector<Running> running;
    int64_t evicted = 0, refused = 0;  // the test must reach both pressure paths
    auto rand_int = [&](int lo, int hi) { return lo + static_cast<int>(rng() % (hi - lo + 1)); };

    auto check = [&] {
      std::vector<int32_t> expect(pool.num_pages(), 0);
      auto cached = cache.all_cached_pages();
      ASSERT_EQ(static_cast<int32_t>(cached.size()), cache.cached_pages());
      std::set<int32_t> unique(cached.begin(), cached.end());
      ASSERT_EQ(unique.size(), cached.size()) << "a page cached twice";
      for (int32_t p : cached) ++expect[p];
      for (auto& r : running)
        for (int32_t p : r.table) ++expect[p];
      int32_t referenced = 0;
      for (int32_t p = 0; p < pool.num_pages(); ++p) {
        ASSERT_EQ(pool.ref_count(p), expect[p]) << "page " << p;
        referenced += expect[p] > 0;
      }
      ASSERT_EQ(pool.num_free() + referenced, pool.num_pages());
      ASSERT_LE(cache.locked_pages(), cache.cached_pages());
    };

    for (int step = 0; step < 3000; ++step) {
      const int op = rand_int(0, 9);
      if (op < 5) {
        // A new request: a few shared "system prompts" with random continuations.
        std::vector<int32_t> tokens = seq(rand_int(0, 3) * 1000, rand_int(0, 3) * page_size + rand_int(0, 2));
        const int extra = rand_int(0, 12);
        for (int i = 0; i < extra; ++i) tokens.push_back(rand_int(0, 3));
        auto m = cache.match_prefix(tokens);
        ASSERT_EQ(m.num_tokens % page_size, 0);
        ASSERT_EQ(static_cast<int64_t>(m.pages.size()) * page_size, m.num_tokens);
        // Lock first: the eviction that makes room must not take the matched prefix itself.
        pool.retain(m.pages);
        cache.lock(m.node);
        const int32_t need = pool.pages_for(tokens.size()) - static_cast<int32_t>(m.pages.size());
        if (need > pool.num_free()) evicted += cache.evict(need - pool.num_free()).size();
        auto fresh = pool.allocate(need);
        if (!fresh) {  // everything left is locked by running requests
          ++refused;
          cache.unlock(m.node);
          pool.release(m.pages);
        } else {
          running.push_back({tokens, concat(m.pages, *fresh), m.node});
        }
      } else if (op < 8 && !running.empty()) {
        // A request finishes: cache it, then drop its own references.
        size_t i = rng() % running.size();
        Running r = running[i];
        running.erase(running.begin() + i);
        auto ins = cache.insert(r.tokens, r.table);
        for (int32_t d : ins.duplicates)
          ASSERT_TRUE(std::find(r.table.begin(), r.table.end(), d) != r.table.end());
        cache.unlock(r.node);
        pool.release(r.table);
      } else if (op == 8) {
        auto dropped = cache.evict(rand_int(1, 10));
        std::set<int32_t> cached;
        for (int32_t p : cache.all_cached_pages()) cached.insert(p);
        for (int32_t p : dropped) ASSERT_FALSE(cached.count(p));
      } else if (running.empty() && rand_int(0, 20) == 0) {
        cache.reset();
        ASSERT_EQ(pool.num_used(), 0);
      }
      check();
      if (HasFatalFailure()) return;
    }
    for (auto& r : running) {
      cache.unlock(r.node);
      pool.release(r.table);
    }
    running.clear();
    EXPECT_EQ(cache.locked_pages(), 0);
    cache.reset();
    EXPECT_EQ(pool.num_used(), 0);
    EXPECT_GT(cache.hit_tokens(), 0);
    EXPECT_GT(evicted, 0);
    EXPECT_GT(refused, 0);
  }
}

// The router's question: the same answer as match_prefix, and nothing changes (no split, no counts).
TEST(RadixCache, CachedPrefixTokensPeeksWithoutTouching) {
  PagePool pool(16, 2);
  RadixCache cache(pool);
  cache.insert(seq(0, 8), *pool.allocate(4));
  auto diverging = seq(0, 8);
  diverging[5] = 999;  // inside the third page: a match would split the node there
  const int64_t queried = cache.queried_tokens();
  EXPECT_EQ(cache.cached_prefix_tokens(seq(0, 8)), 8);
  EXPECT_EQ(cache.cached_prefix_tokens(seq(0, 7)), 6);
  EXPECT_EQ(cache.cached_prefix_tokens(diverging), 4);
  EXPECT_EQ(cache.cached_prefix_tokens(seq(50, 8)), 0);
  EXPECT_EQ(cache.queried_tokens(), queried);  // no hit-rate count
  EXPECT_EQ(cache.match_prefix(diverging).num_tokens, 4);  // what a real match says
}
