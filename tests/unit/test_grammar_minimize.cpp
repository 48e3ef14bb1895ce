// Minimization of the per-rule automata (grammar/dfa_minimize.h): the minimized automaton accepts
// exactly what the subset construction's does (random sentences of either, and their mutations,
// get the same verdict), no two of its states are equivalent (checked by plain Moore refinement),
// and text-like rules (UTF-8 classes, bounded repetitions) shrink.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "grammar_test_util.h"

namespace ds::grammar::testing {
namespace {

std::shared_ptr<const CompiledGrammar> compile_spec_with(const GrammarSpec& spec, bool minimize) {
  PdaLimits limits;
  limits.minimize = minimize;
  return std::make_shared<const CompiledGrammar>(compile_pda(GrammarCompiler::build(spec), limits), byte_vocab(), nullptr);
}

// Whole-text acceptance, a byte at a time (ids 0-255 of byte_vocab are the single bytes).
bool accepts(const std::shared_ptr<const CompiledGrammar>& g, const std::string& text) {
  GrammarMatcher m(g);
  for (unsigned char c : text)
    if (!m.accept_token(int32_t(c))) return false;
  return m.can_finish();
}

// Number of equivalence classes of each rule's states by naive Moore refinement.
size_t moore_classes(const Pda& pda) {
  size_t total = 0;
  for (uint32_t r = 0; r < pda.rule_start.size(); ++r) {
    const uint32_t begin = pda.rule_start[r];
    const uint32_t end = r + 1 < pda.rule_start.size() ? pda.rule_start[r + 1] : uint32_t(pda.nodes.size());
    std::vector<uint32_t> cls(end - begin);
    for (uint32_t n = begin; n < end; ++n) cls[n - begin] = pda.nodes[n].accepting ? 1 : 0;
    for (size_t count = 0;;) {
      std::map<std::vector<int64_t>, uint32_t> ids;
      std::vector<uint32_t> next(cls.size());
      for (uint32_t n = begin; n < end; ++n) {
        std::vector<int64_t> sig{cls[n - begin]};
        for (int b = 0; b < 256; ++b) {
          const uint32_t t = pda.step(n, uint8_t(b));
          sig.push_back(t == UINT32_MAX ? -1 : int64_t(cls[t - begin]));
        }
        for (uint32_t e = pda.nodes[n].ref_begin; e < pda.nodes[n].ref_end; ++e)
          sig.push_back(int64_t(pda.ref_edges[e].rule) << 32 | cls[pda.ref_edges[e].target - begin]);
        next[n - begin] = ids.emplace(std::move(sig), uint32_t(ids.size())).first->second;
      }
      cls = std::move(next);
      if (ids.size() == count) break;
      count = ids.size();
    }
    std::vector<char> seen(cls.size(), 0);
    for (uint32_t c : cls) total += seen[c] ? 0 : 1, seen[c] = 1;
  }
  return total;
}

std::string mutate(std::string s, std::mt19937& rng) {
  const char pool[] = "ab<>/\"{}[],:0129 \n\t.-e\xc3\xa9\xe6\x97\xa5\xff";
  switch (rng() % 4) {
    case 0:
      if (!s.empty()) s.erase(rng() % s.size(), 1);
      break;
    case 1: s.insert(s.begin() + long(rng() % (s.size() + 1)), pool[rng() % (sizeof pool - 1)]); break;
    case 2:
      if (!s.empty()) s[rng() % s.size()] = pool[rng() % (sizeof pool - 1)];
      break;
    default: s.resize(rng() % (s.size() + 1)); break;
  }
  return s;
}

TEST(GrammarMinimize, SameLanguageFewerStatesNoTwins) {
  const std::vector<GrammarSpec> specs = {
      {GrammarKind::Regex, "[^<]{0,6}x|[a-z\\x{e9}\\x{65e5}]{2,5}(ab|cb)*"},
      {GrammarKind::Regex, "(a|b)*abb|(\\d{1,3}\\.){3}\\d{1,3}"},
      {GrammarKind::JsonSchema,
       R"({"type":"object","properties":{"s":{"type":"string","maxLength":5},"n":{"type":"integer"},
           "e":{"enum":["red","green","greed"]},"a":{"type":"array","items":{"type":"number"},"maxItems":3}},
           "required":["s","e"],"additionalProperties":false})"},
      {GrammarKind::JsonObject, ""},
      {GrammarKind::Ebnf, "root ::= item (\",\" item)*\nitem ::= [a-c]+ | \"(\" root \")\" | \"ab\" [0-9]{1,3}"},
      {GrammarKind::DsmlToolCalls,
       R"({"tools":[{"name":"f","parameters":{"type":"object","properties":{"q":{"type":"string","maxLength":4},
           "k":{"type":"integer","minimum":0,"maximum":99}},"required":["q"]}},{"name":"g"}]})"},
  };
  std::mt19937 rng(7);
  size_t checked = 0;
  for (const GrammarSpec& spec : specs) {
    SCOPED_TRACE(spec.text);
    const auto plain = compile_spec_with(spec, false), small = compile_spec_with(spec, true);
    EXPECT_LE(small->pda().nodes.size(), plain->pda().nodes.size());
    EXPECT_EQ(moore_classes(small->pda()), small->pda().nodes.size()) << "two states of a rule are equivalent";
    for (int i = 0; i < 60; ++i) {
      for (const auto* g : {&plain, &small}) {
        std::optional<std::string> s = sample(*g, rng, 300, 0.2);
        if (!s) continue;
        EXPECT_TRUE(accepts(plain, *s) && accepts(small, *s)) << *s;
        for (int k = 0; k < 4; ++k) {
          const std::string m = mutate(*s, rng);
          EXPECT_EQ(accepts(plain, m), accepts(small, m)) << m;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 1500u);
  // A length-bounded class of all UTF-8 characters but one: the construction keeps one copy of
  // each lead-byte branch per position, the minimal automaton shares them.
  const GrammarSpec bounded{GrammarKind::Regex, "[^<]{0,16}"};
  const size_t before = compile_spec_with(bounded, false)->pda().nodes.size();
  const size_t after = compile_spec_with(bounded, true)->pda().nodes.size();
  EXPECT_LT(after * 2, before) << before << " -> " << after;
}

}  // namespace
}  // namespace ds::grammar::testing
