// The tokenizer's pieces alone: lossy UTF-8, the byte mapping, regex splitting behaviors, the BPE
// merge loops against a naive reference, and added-token matching on a tiny tokenizer.json.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>

#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace ds::tok {
namespace {
using nlohmann::json;

std::string lossy(std::string_view s) {
  std::string out;
  utf8::append_lossy(out, s);
  return out;
}

TEST(Utf8, LossyMatchesPythonReplace) {
  // Expected values are Python's bytes.decode("utf-8", "replace").
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("abc"), "abc");
  EXPECT_EQ(lossy("\xff"), R);
  EXPECT_EQ(lossy("\xe4\xbd"), R);
  EXPECT_EQ(lossy("\xe4\xbd" "A"), R + "A");
  EXPECT_EQ(lossy("\xf0\x80\x80"), R + R + R);
  EXPECT_EQ(lossy("\xf0\x9f\x98"), R);
  EXPECT_EQ(lossy("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  EXPECT_EQ(lossy("\xed\xa0\x80"), R + R + R);
  EXPECT_EQ(lossy("\xc0\xaf"), R + R);
  EXPECT_EQ(lossy("\x80\x80"), R + R);
  EXPECT_EQ(lossy("\xe0\x80\xaf"), R + R + R);
  EXPECT_EQ(lossy("\xf4\x90\x80\x80"), R + R + R + R);
  EXPECT_EQ(lossy("a\xc2"), "a" + R);
  EXPECT_EQ(lossy("\xf5\x80"), R + R);
  EXPECT_EQ(lossy("\xe1\x80\xe1\x80\x80"), R + "\xe1\x80\x80");
}

TEST(Utf8, NonFinalChunkHoldsOnlyAnIncompleteTail) {
  std::string out;
  EXPECT_EQ(utf8::append_lossy(out, "ab\xe4\xbd", false), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(utf8::append_lossy(out, "ab\xe4\xbd" "c", false), 5u);
  EXPECT_EQ(out, "ab\xEF\xBF\xBD" "c");
  // Random byte strings cut anywhere: held-back prefix + the rest gives the one-shot result.
  std::mt19937 rng(7);
  for (int it = 0; it < 20000; ++it) {
    std::string s(rng() % 12, '\0');
    for (char& c : s) c = char(rng() % 4 == 0 ? rng() % 128 : 0x80 + rng() % 128);
    size_t cut = s.empty() ? 0 : rng() % (s.size() + 1);
    std::string a;
    size_t used = utf8::append_lossy(a, std::string_view(s).substr(0, cut), false);
    EXPECT_TRUE(utf8::is_valid(a));
    utf8::append_lossy(a, std::string_view(s).substr(used));
    EXPECT_EQ(a, lossy(s));
  }
}

TEST(ByteLevel, MapsEveryByteAndBack) {
  EXPECT_EQ(byte_level::byte_to_utf8()[' '], "Ġ");
  EXPECT_EQ(byte_level::byte_to_utf8()['\n'], "Ċ");
  EXPECT_EQ(byte_level::byte_to_utf8()['a'], "a");
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  EXPECT_EQ(byte_level::token_to_bytes(byte_level::bytes_to_token(all)), all);
  // A token with a code point outside the table (like a special token) decodes to itself.
  EXPECT_EQ(byte_level::token_to_bytes("<｜User｜>"), "<｜User｜>");
}

// Matches of `pattern` in `text`, as strings.
std::vector<std::string> matches(std::string_view pattern, std::string_view text) {
  std::vector<Range> m;
  Regex(pattern, false, "test").find_all(text, m);
  std::vector<std::string> out;
  for (auto [s, e] : m) out.emplace_back(text.substr(s, e - s));
  return out;
}

TEST(Regex, WhitespaceIsUnicodeWhiteSpaceAsInOniguruma) {
  using V = std::vector<std::string>;
  const std::string nel = "\xC2\x85", mvs = "\xE1\xA0\x8E", nbsp = "\xC2\xA0", ideo = "\xE3\x80\x80";  // U+0085/180E/A0/3000
  EXPECT_EQ(matches(R"(\s+)", "a" + nel + "\t" + nbsp + ideo + "b"), V{nel + "\t" + nbsp + ideo});
  EXPECT_EQ(matches(R"(\s+)", "a" + mvs + "b"), V{});  // U+180E is not White_Space (Unicode >= 6.3)
  EXPECT_EQ(matches(R"(\S+)", "a" + mvs + " b"), (V{"a" + mvs, "b"}));
  EXPECT_EQ(matches(R"([\s\d]+)", "x1" + nel + mvs), V{"1" + nel});
  EXPECT_EQ(matches(R"([]\s]+|\\s)", "]" + nel + "\\s"), (V{"]" + nel, "\\s"}));
  // DeepSeek's lookahead: a space run stops before the last space when text follows.
  EXPECT_EQ(matches(R"(\s+(?!\S)|\s+)", "  " + mvs), (V{" ", " "}));
  EXPECT_EQ(matches(R"([[:alpha:]\s]+)", "ab c1"), V{"ab c"});
}

TEST(Regex, InvalidUtf8NeverMatches) {
  Regex re(R"(\p{L}+|\s+)", false, "test");
  std::vector<Range> m;
  re.find_all("ab\xff\xfe" "cd \x80", m);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0], Range(0, 2));
  EXPECT_EQ(m[1], Range(4, 6));
  EXPECT_EQ(m[2], Range(6, 7));
}

std::vector<std::string> split_with(SplitBehavior b, bool invert, std::string_view text, std::string_view pat = "-") {
  SplitStep step{Regex(pat, true, "test"), b, invert};
  std::vector<Range> out;
  apply_split(step, text, 0, out);
  std::vector<std::string> pieces;
  for (auto [s, e] : out) pieces.emplace_back(text.substr(s, e - s));
  return pieces;
}

TEST(PreTokenizer, SplitBehaviorsAsDocumentedByHF) {
  using V = std::vector<std::string>;
  const char* t = "the-final--countdown";
  EXPECT_EQ(split_with(SplitBehavior::Removed, false, t), (V{"the", "final", "countdown"}));
  EXPECT_EQ(split_with(SplitBehavior::Isolated, false, t), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split_with(SplitBehavior::MergedWithPrevious, false, t), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split_with(SplitBehavior::MergedWithNext, false, t), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split_with(SplitBehavior::Contiguous, false, t), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split_with(SplitBehavior::Removed, true, t), (V{"-", "-", "-"}));
  EXPECT_EQ(split_with(SplitBehavior::Isolated, false, ""), V{});
}

// Naive BPE straight from the definition, on strings: merge the best-ranked adjacent pair,
// leftmost first, until none is left.
std::vector<std::string> naive_bpe(const std::vector<std::pair<std::string, std::string>>& merges, std::string word) {
  std::vector<std::string> s;
  for (char c : word) s.emplace_back(1, c);
  for (;;) {
    size_t best_rank = SIZE_MAX, best = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i)
      for (size_t r = 0; r < merges.size() && r < best_rank; ++r)
        if (merges[r].first == s[i] && merges[r].second == s[i + 1]) best_rank = r, best = i;
    if (best_rank == SIZE_MAX) return s;
    s[best] += s[best + 1];
    s.erase(s.begin() + std::ptrdiff_t(best) + 1);
  }
}

TEST(Bpe, SmallAndHeapLoopsAgreeWithNaiveBpe) {
  std::mt19937 rng(11);
  for (int model = 0; model < 20; ++model) {
    // Random merges over the alphabet {a, b, c}; every product joins the vocab.
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_level::byte_to_utf8()[b]] = b;
    std::vector<std::string> toks = {"a", "b", "c"};
    std::vector<std::pair<std::string, std::string>> merges;
    json jm = json::array();
    for (int i = 0; i < 40; ++i) {
      auto a = toks[rng() % toks.size()], b = toks[rng() % toks.size()];
      if (a.size() + b.size() > 8) continue;
      bool dup = false;
      for (auto& m : merges) dup |= m.first == a && m.second == b;
      if (dup) continue;
      merges.emplace_back(a, b);
      jm.push_back(json::array({a, b}));
      if (!vocab.contains(a + b)) {
        vocab[a + b] = int(vocab.size());
        toks.push_back(a + b);
      }
    }
    auto bpe = BpeModel::from_json(json{{"type", "BPE"}, {"vocab", vocab}, {"merges", jm}});
    for (int w = 0; w < 200; ++w) {
      std::string word(1 + rng() % 120, 'a');
      for (char& c : word) c = char('a' + rng() % 3);
      std::vector<std::string> want = naive_bpe(merges, word);
      std::vector<int32_t> small, heap, cached;
      bpe.merge_small(word, small);
      bpe.merge_heap(word, heap);
      bpe.encode_word(word, cached);
      std::vector<std::string> got;
      for (int32_t id : heap) got.push_back(*bpe.id_to_token(id));
      EXPECT_EQ(got, want) << word;
      EXPECT_EQ(small, heap) << word;
      EXPECT_EQ(cached, heap) << word;
    }
  }
}

// The small fixture tokenizer, its added tokens replaced by `added`.
Tokenizer small_with(json added) {
  auto j = testing::read_json(DS_SOURCE_DIR "/tests/fixtures/tokenizer/small/tokenizer.json");
  j["added_tokens"] = std::move(added);
  return Tokenizer::from_strings(j.dump());
}

json added(int id, const char* content, json flags = json::object()) {
  json t = {{"id", id},          {"content", content}, {"special", true},      {"normalized", false},
            {"lstrip", false},   {"rstrip", false},    {"single_word", false}};
  t.update(flags);
  return t;
}

TEST(AddedTokens, SmallFixtureBasics) {
  auto tok = Tokenizer::load(DS_SOURCE_DIR "/tests/fixtures/tokenizer/small");
  EXPECT_EQ(tok.bos_id(), 300);
  EXPECT_EQ(tok.eos_id(), 301);
  EXPECT_FALSE(tok.add_bos_token());
  EXPECT_EQ(tok.chat_template(), "{{ messages }}");
  EXPECT_EQ(tok.vocab_size(), 303);
  auto hello = *tok.token_to_id("hello"), world = *tok.token_to_id("Ġworld");
  EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{hello, world}));
  EXPECT_EQ(tok.encode("<s>hello<tool></s>", true), (std::vector<int32_t>{300, 300, hello, 302, 301}));
  EXPECT_EQ(tok.decode(tok.encode("<s>hello<tool></s>"), true), "hello<tool>");
}

TEST(AddedTokens, LongestMatchFirstAndLeftmost) {
  auto tok = small_with(json::array({added(300, "<a>"), added(301, "<a><b>"), added(302, "b>")}));
  EXPECT_EQ(tok.encode("<a><b>"), (std::vector<int32_t>{301}));
  EXPECT_EQ(tok.encode("<a>b>"), (std::vector<int32_t>{300, 302}));
}

TEST(AddedTokens, NormalizedTokensMatchOnlyBetweenTheOthers) {
  // "xy" (normalized) overlaps "yz" (not normalized): the first pass takes "yz".
  auto tok = small_with(json::array({added(300, "xy", {{"normalized", true}}), added(301, "yz")}));
  auto ids = tok.encode("xyz");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[1], 301);
  EXPECT_EQ(tok.decode(ids), "xyz");
}

TEST(AddedTokens, StripAndSingleWord) {
  auto tok = small_with(json::array({added(300, "<l>", {{"lstrip", true}}), added(301, "<r>", {{"rstrip", true}}),
                                     added(302, "ab", {{"single_word", true}})}));
  auto a = *tok.token_to_id("a");
  auto space = *tok.token_to_id("Ġ");
  EXPECT_EQ(tok.encode("a  <l>"), (std::vector<int32_t>{a, 300}));
  EXPECT_EQ(tok.encode("<r> \t a"), (std::vector<int32_t>{301, a}));
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{302}));
  EXPECT_EQ(tok.encode("x ab"), (std::vector<int32_t>{*tok.token_to_id("x"), space, 302}));
  EXPECT_NE(tok.encode("xab"), (std::vector<int32_t>{*tok.token_to_id("x"), 302}));  // inside a word
}

}  // namespace
}  // namespace ds::tok
