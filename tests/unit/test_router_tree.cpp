// The cache-aware policy's approximate tree against a brute-force reference: the set of texts
// inserted (match = longest common prefix with any of them; size = distinct non-empty prefixes).
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "router/approx_tree.h"

using ds::router::ApproxTree;

namespace {

size_t common_prefix(const std::string& a, const std::string& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

size_t reference_match(const std::vector<std::string>& texts, const std::string& q) {
  size_t best = 0;
  for (const auto& t : texts) best = std::max(best, common_prefix(t, q));
  return best;
}

size_t reference_size(const std::vector<std::string>& texts) {
  std::set<std::string> prefixes;
  for (const auto& t : texts)
    for (size_t n = 1; n <= t.size(); ++n) prefixes.insert(t.substr(0, n));
  return prefixes.size();
}

// Random texts over a small alphabet, so that they share prefixes and split edges often.
std::string random_text(std::mt19937& rng, size_t max_len) {
  std::uniform_int_distribution<size_t> len(0, max_len);
  std::uniform_int_distribution<int> ch(0, 2);
  std::string s(len(rng), 'a');
  for (char& c : s) c = char('a' + ch(rng));
  return s;
}

}  // namespace

TEST(RouterTree, MatchesAndSizesLikeTheSetOfTexts) {
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    ApproxTree tree;
    std::vector<std::string> texts;
    for (int i = 0; i < 40; ++i) {
      texts.push_back(random_text(rng, 12));
      tree.insert(texts.back());
      ASSERT_EQ(tree.size(), reference_size(texts)) << "after inserting '" << texts.back() << "'";
      for (int q = 0; q < 10; ++q) {
        const std::string query = random_text(rng, 14);
        ASSERT_EQ(tree.match(query), reference_match(texts, query)) << "query '" << query << "'";
      }
    }
  }
}

TEST(RouterTree, PartialEdgeAndEmptyText) {
  ApproxTree tree;
  EXPECT_EQ(tree.match("anything"), 0u);
  tree.insert("hello world");
  EXPECT_EQ(tree.match("hello there"), 6u);  // "hello " is inside one edge
  EXPECT_EQ(tree.match("hello world, again"), 11u);
  EXPECT_EQ(tree.match(""), 0u);
  tree.insert("");
  EXPECT_EQ(tree.size(), 11u);
}

TEST(RouterTree, EvictionDropsTheLeastRecentlyUsedFirst) {
  const std::string a1 = "system prompt A: question 1", b2 = "system prompt B: question 2",
                    other = "other text entirely", a3 = "system prompt A: question 3";
  ApproxTree tree;
  for (const auto& t : {a1, b2, other, a3}) tree.insert(t);
  // Leaves by last use: "1" (a1), "B: question 2" (b2), "other text entirely", "3" (a3). The shared
  // "system prompt A: question " was used again by a3, so a1's own "1" is the oldest leaf.
  tree.evict_to(tree.size() - 1);
  EXPECT_EQ(tree.match(a1), a1.size() - 1);
  for (const auto& t : {b2, other, a3}) EXPECT_EQ(tree.match(t), t.size()) << t;
  // Next oldest: b2's leaf; its shared "system prompt " stays (a3 uses it).
  tree.evict_to(tree.size() - 1);
  EXPECT_EQ(tree.match(b2), std::string("system prompt ").size());
  for (const auto& t : {other, a3}) EXPECT_EQ(tree.match(t), t.size()) << t;
  // Then "other text entirely", then a3's path down to nothing.
  tree.evict_to(tree.size() - 1);
  EXPECT_EQ(tree.match(other), 0u);
  EXPECT_EQ(tree.match(a3), a3.size());
  EXPECT_EQ(tree.size(), a3.size());
}

TEST(RouterTree, EvictionBoundsTheSizeAndKeepsTheNewest) {
  std::mt19937 rng(11);
  ApproxTree tree;
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i) {
    texts.push_back(random_text(rng, 40));
    tree.insert(texts.back());
  }
  for (size_t limit : {2000u, 500u, 100u, 40u, 0u}) {
    tree.evict_to(limit);
    EXPECT_LE(tree.size(), limit);
    // The newest text was used last: it survives as long as it alone fits.
    if (texts.back().size() <= limit) {
      EXPECT_EQ(tree.match(texts.back()), texts.back().size()) << limit;
    }
    // Whatever is left is a subset of what was inserted.
    for (int q = 0; q < 50; ++q) {
      const std::string query = random_text(rng, 40);
      EXPECT_LE(tree.match(query), reference_match(texts, query));
    }
  }
  EXPECT_EQ(tree.size(), 0u);
  tree.insert("again");
  EXPECT_EQ(tree.match("again"), 5u);
}
