// Token masks against brute force: at every step of random walks, a token is in the mask exactly
// when the matcher accepts its bytes from the current state. On a random vocabulary built from
// the grammars' characters and, when the npm tokenizer is installed, on DeepSeek's 129K vocabulary.
#include <gtest/gtest.h>

#include <random>

#include "grammar_test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace ds::grammar {
namespace {

std::shared_ptr<const TokenTable> random_vocab(uint32_t seed) {
  const std::vector<std::string> alphabet = {"{", "}", "[", "]", "\"", ":", ",", " ", "\n", "0", "1", "7", ".", "-", "e",
                                             "+", "a", "b", "c", "t", "r", "u", "f", "l", "s", "n", "\\", "x", "é", "日", "\xe6"};
  std::mt19937 rng(seed);
  std::vector<std::string> t;
  for (int b = 0; b < 128; ++b) t.push_back(std::string(1, char(b)));
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const int len = 1 + int(rng() % 6);
    for (int j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
    t.push_back(s);
  }
  t.push_back("");  // unused id: never allowed
  t.push_back("");  // stop
  return TokenTable::from_bytes(std::move(t), {int32_t(t.size()) - 1});
}

// Walks `steps` random tokens (or until the grammar can only stop), checking each mask.
void check_walks(const std::shared_ptr<const CompiledGrammar>& g, int walks, int steps, uint32_t seed, size_t* checked) {
  std::mt19937 rng(seed);
  const TokenTable& vocab = g->vocab();
  TokenBitmask mask;
  for (int w = 0; w < walks; ++w) {
    GrammarMatcher m(g);
    for (int s = 0; s < steps; ++s) {
      m.fill_next_token_mask(mask);
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < vocab.vocab_size(); ++id) {
        bool ok = m.accept_token(id);
        if (ok) {
          m.rollback(1);
          allowed.push_back(id);
        }
        ASSERT_EQ(mask.test(id), ok) << "token " << id << " '" << vocab.bytes(id) << "' at step " << s;
      }
      ++*checked;
      std::vector<int32_t> non_stop;
      for (int32_t id : allowed)
        if (!vocab.is_stop(id)) non_stop.push_back(id);
      if (non_stop.empty()) break;
      ASSERT_TRUE(m.accept_token(non_stop[rng() % non_stop.size()]));
    }
  }
}

const char* kSchema = R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},
  "tags":{"type":"array","items":{"enum":["a","bc","日"]},"maxItems":3},"n":{"type":"integer","minimum":-5,"maximum":170},
  "x":{"type":"number"},"ok":{"type":"boolean"},"sub":{"anyOf":[{"type":"null"},{"$ref":"#"}]}},"required":["name","n"]})";

TEST(GrammarMask, MatchesBruteForceOnRandomVocab) {
  auto vocab = random_vocab(1);
  size_t checked = 0;
  check_walks(testing::compile_spec(GrammarKind::JsonSchema, kSchema, vocab), 6, 40, 2, &checked);
  check_walks(testing::compile_spec(GrammarKind::JsonObject, "", vocab), 6, 40, 3, &checked);
  check_walks(testing::compile_spec(GrammarKind::Regex, R"((\d+\.)?[a-c]{2,5}(日|é)*x?)", vocab), 10, 12, 4, &checked);
  check_walks(testing::compile_spec(GrammarKind::Ebnf, R"(root ::= "[" (v ("," v)*)? "]"
                                                          v ::= root | [0-9] [0-9]? | "\"" [a-c]* "\"")", vocab),
              6, 40, 5, &checked);
  EXPECT_GT(checked, 200u);
}

TEST(GrammarMask, SharedNodeSetsAcrossGrammars) {
  // Through the compiler, node token sets are shared between grammars with equal rules (the JSON
  // string, number, ...): masks must still match brute force in each grammar.
  auto vocab = random_vocab(2);
  GrammarCompiler compiler(vocab);
  size_t checked = 0;
  const std::vector<std::string> schemas = {
      kSchema, R"({"type":"array","items":{"type":"string"}})", R"({"type":"object","properties":{"s":{"type":"string"}},"required":["s"]})",
      R"({"type":"array","items":{"type":"object","properties":{"v":{"type":"number"}}}})"};
  for (int round = 0; round < 2; ++round)
    for (size_t i = 0; i < schemas.size(); ++i) {
      auto g = compiler.compile(GrammarSpec{GrammarKind::JsonSchema, schemas[i]});
      g->warm_up();
      check_walks(g, 3, 30, uint32_t(10 + i + round), &checked);
    }
  check_walks(compiler.compile(GrammarSpec{GrammarKind::JsonObject, ""}), 3, 30, 20, &checked);
  EXPECT_EQ(compiler.cache_hits(), schemas.size());
  EXPECT_GT(checked, 100u);
}

TEST(GrammarMask, MatchesBruteForceOnDeepSeekVocab) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto vocab = TokenTable::from_tokenizer(tok, {tok.eos_id()});
  size_t checked = 0;
  check_walks(testing::compile_spec(GrammarKind::JsonSchema, kSchema, vocab), 1, 12, 7, &checked);
  check_walks(testing::compile_spec(GrammarKind::Regex, R"([A-Z][a-z]{1,6}( [A-Z][a-z]+)?, \d{1,3})", vocab), 1, 6, 8, &checked);
  // Free text before an optional tool-call block (tool_choice "auto"): every token but those that
  // would open a block; and a call with a length-bounded raw string.
  const char* tool = R"({"name":"f","parameters":{"type":"object","properties":{"s":{"type":"string","maxLength":5}},"required":["s"]}})";
  check_walks(testing::compile_spec(GrammarKind::DsmlToolCalls, std::string(R"({"optional":true,"tools":[)") + tool + "]}", vocab), 1, 5,
              9, &checked);
  check_walks(testing::compile_spec(GrammarKind::DsmlToolCalls, std::string(R"({"tools":[)") + tool + "]}", vocab), 1, 40, 10, &checked);
  EXPECT_GE(checked, 20u);
}

TEST(GrammarMask, DeepSeekVocabBytes) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto vocab = TokenTable::from_tokenizer(tok, {tok.eos_id()});
  EXPECT_EQ(vocab->vocab_size(), tok.vocab_size());
  // Byte-level pieces decode to their bytes; specials have none (a grammar never emits them).
  const auto ids = tok.encode(" hello日本");
  std::string joined;
  for (int32_t id : ids) joined += vocab->bytes(id);
  EXPECT_EQ(joined, " hello日本");
  EXPECT_TRUE(vocab->bytes(tok.eos_id()).empty());
  EXPECT_TRUE(vocab->is_stop(tok.eos_id()));
}

}  // namespace
}  // namespace ds::grammar
