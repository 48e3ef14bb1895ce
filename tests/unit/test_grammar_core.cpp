// The grammar engine's core: UTF-8 classes, the automaton, the matcher (rollback, finishing,
// forced bytes) and EBNF grammars on sample sentences.
#include <gtest/gtest.h>

#include <random>

#include "grammar/ebnf.h"
#include "grammar_test_util.h"
#include "util/error.h"

namespace ds::grammar {
namespace {

using testing::byte_vocab;
using testing::compile_spec;
using testing::compile_with;

std::shared_ptr<const CompiledGrammar> ebnf(const std::string& text) { return compile_spec(GrammarKind::Ebnf, text); }

bool matches(const std::shared_ptr<const CompiledGrammar>& g, const std::string& s) { return grammar_matches(g, s); }

TEST(GrammarUtf8, ClassAcceptsExactlyItsCodepoints) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    CodepointRanges ranges;
    for (int k = 0; k < 3; ++k) {
      uint32_t a = rng() % 0x110000, b = a + rng() % (trial % 2 ? 0x30 : 0x3000);
      ranges.emplace_back(a, std::min<uint32_t>(b, 0x10FFFF));
    }
    Grammar g;
    g.root = g.add_rule("root", utf8_class(ranges));
    auto cg = compile_with(g, byte_vocab());
    const auto norm = normalize(ranges);
    auto inside = [&](uint32_t cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) return false;
      for (auto [lo, hi] : norm)
        if (cp >= lo && cp <= hi) return true;
      return false;
    };
    std::vector<uint32_t> probes;
    for (auto [lo, hi] : norm)
      for (int64_t d : {-2, -1, 0, 1, 2}) probes.push_back(uint32_t(std::clamp<int64_t>(int64_t(lo) + d, 0, 0x10FFFF))),
          probes.push_back(uint32_t(std::clamp<int64_t>(int64_t(hi) + d, 0, 0x10FFFF)));
    for (int k = 0; k < 300; ++k) probes.push_back(rng() % 0x110000);
    for (uint32_t cp : probes) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      std::string s;
      append_utf8(s, cp);
      EXPECT_EQ(matches(cg, s), inside(cp)) << std::hex << cp;
    }
    // Overlong and surrogate encodings never match.
    EXPECT_FALSE(matches(cg, "\xC0\x80"));
    EXPECT_FALSE(matches(cg, "\xED\xA0\x80"));
  }
}

TEST(GrammarEbnf, Samples) {
  auto g = ebnf(R"(
    # a tiny key=value list
    root ::= pair ("," pair)*
    pair ::= key "=" value
    key  ::= [a-z_] [a-z0-9_]*
    value ::= [0-9]+ | "\"" [^"\n]* "\"" | "true" | "false"
  )");
  for (const char* ok : {"a=1", "a=1,b_2=\"x y\"", "k=true,z=false,q=\"\"", "x=\"日本\""}) EXPECT_TRUE(matches(g, ok)) << ok;
  for (const char* bad : {"", "a=", "A=1", "a=1,", "a=\"x", "a=tru", "a=1 ,b=2", "a=\"\n\""}) EXPECT_FALSE(matches(g, bad)) << bad;

  auto rep = ebnf(R"(root ::= "x"{2,3} "y"{2} "z"{,1} "w"{1,})");
  EXPECT_TRUE(matches(rep, "xxyyw"));
  EXPECT_TRUE(matches(rep, "xxxyyzwww"));
  EXPECT_FALSE(matches(rep, "xyyw"));
  EXPECT_FALSE(matches(rep, "xxxxyyw"));
  EXPECT_FALSE(matches(rep, "xxyyzzw"));
  EXPECT_FALSE(matches(rep, "xxyy"));

  // Escapes, single quotes, classes with escapes, nested recursion.
  auto esc = ebnf(R"G(root ::= '\x41' "\u00e9\t" [\]\-a]+ nest
                     nest ::= "(" nest? ")")G");
  EXPECT_TRUE(matches(esc, "A\xC3\xA9\t]-a((()))"));
  EXPECT_FALSE(matches(esc, "A\xC3\xA9\t]-a(()"));
  EXPECT_FALSE(matches(esc, "A\xC3\xA9\tb()"));

  // Nullable rules and right recursion.
  auto nul = ebnf(R"(root ::= a b "!"
                     a ::= "a" a | ""
                     b ::= "b"*)");
  for (const char* ok : {"!", "aaa!", "bb!", "aabb!"}) EXPECT_TRUE(matches(nul, ok)) << ok;
  EXPECT_FALSE(matches(nul, "ba!"));
}

TEST(GrammarEbnf, Errors) {
  auto err = [](const std::string& text) {
    try {
      ebnf(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("root ::= x").find("'x' is used but never defined"), std::string::npos) << err("root ::= x");
  EXPECT_NE(err("root ::= root \"a\" | \"b\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(err("root ::= a\na ::= b? a \"x\"\nb ::= \"b\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(err("start ::= \"a\"").find("no rule named 'root'"), std::string::npos);
  EXPECT_NE(err("root ::= \"a").find("unterminated string"), std::string::npos);
  EXPECT_NE(err("root ::= (\"a\"").find("unclosed '('"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\" (= \"b\")").find("lookahead"), std::string::npos);
  EXPECT_NE(err("root ::= [b-a]").find("out of order"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\"{3,2}").find("n < m"), std::string::npos);
  EXPECT_NE(err("root ::= \"a\"\n  ::= \"b\"").find("line 2"), std::string::npos);
}

TEST(GrammarMatcher, RollbackFinishAndForcedBytes) {
  auto g = ebnf(R"(root ::= "{\"name\": \"" [a-z]+ "\"}")");
  GrammarMatcher m(g);
  EXPECT_EQ(m.forced_bytes(), "{\"name\": \"");
  EXPECT_FALSE(m.can_finish());
  ASSERT_TRUE(m.accept_bytes("{\"name\": \"ab"));
  ASSERT_TRUE(m.accept_bytes("c"));
  EXPECT_FALSE(m.accept_bytes("1"));  // refused, nothing changes
  EXPECT_EQ(m.steps_accepted(), 2u);
  ASSERT_TRUE(m.accept_bytes("\"}"));
  EXPECT_TRUE(m.can_finish());
  EXPECT_TRUE(m.must_finish());
  const int32_t stop = byte_vocab()->stop_ids()[0];
  EXPECT_TRUE(m.accept_token(stop));
  EXPECT_TRUE(m.finished());
  EXPECT_FALSE(m.accept_bytes("x"));
  m.rollback(2);  // the stop and "\"}"
  EXPECT_FALSE(m.finished());
  EXPECT_FALSE(m.can_finish());
  EXPECT_FALSE(m.accept_token(stop));
  EXPECT_TRUE(m.accept_bytes("d\"}"));
  EXPECT_TRUE(m.can_finish());
  m.rollback(m.steps_accepted());
  EXPECT_EQ(m.forced_bytes(), "{\"name\": \"");
  EXPECT_THROW(m.rollback(1), Error);
}

TEST(GrammarMatcher, SamplesAreSentences) {
  // Sentences drawn through the masks are accepted by a fresh matcher and end where allowed.
  auto g = ebnf(R"(root ::= "[" (item ("," item)*)? "]"
                   item ::= [0-9]+ | "\"" [a-c]* "\"" | root)");
  std::mt19937 rng(3);
  int finished = 0;
  for (int i = 0; i < 200; ++i) {
    auto s = testing::sample(g, rng, 200, 0.5);
    if (!s) continue;
    ++finished;
    EXPECT_TRUE(matches(g, *s)) << *s;
  }
  EXPECT_GT(finished, 50);
}

}  // namespace
}  // namespace ds::grammar
