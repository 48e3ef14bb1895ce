// Helpers for the grammar engine's tests: small vocabularies, compiling without the cache, and
// drawing random sentences of a grammar through its token masks.
#pragma once
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "grammar/grammar_compiler.h"
#include "grammar/matcher.h"

namespace ds::grammar::testing {

// Every single byte (ids 0-255), some multi-byte pieces, and a stop token (the last id).
inline std::shared_ptr<const TokenTable> byte_vocab() {
  static auto v = [] {
    std::vector<std::string> t;
    for (int b = 0; b < 256; ++b) t.push_back(std::string(1, char(b)));
    for (const char* s : {"{\"", "\":", "\", \"", "\",", "true", "false", "null", "12", "3.", "e+", "\"}", "]}", "}]",
                          "[{", ", ", ",\n  ", "ab", "abc", "\\u00", "\\n", "é", "\xe6\x97\xa5", "\xe6\x97", "\xa5\"", "-0", "00"})
      t.push_back(s);
    t.push_back("");  // the stop token
    int32_t stop = int32_t(t.size()) - 1;
    return TokenTable::from_bytes(std::move(t), {stop});
  }();
  return v;
}

inline std::shared_ptr<const CompiledGrammar> compile_with(const Grammar& g, std::shared_ptr<const TokenTable> vocab) {
  return std::make_shared<const CompiledGrammar>(compile_pda(g), std::move(vocab), nullptr);
}

inline std::shared_ptr<const CompiledGrammar> compile_spec(GrammarKind kind, const std::string& text,
                                                           std::shared_ptr<const TokenTable> vocab = byte_vocab()) {
  return compile_with(GrammarCompiler::build(GrammarSpec{kind, text}), std::move(vocab));
}

// A random sentence: tokens drawn uniformly from each mask (stop taken with probability
// p_stop when allowed). nullopt if it is not finished within max_tokens.
inline std::optional<std::string> sample(const std::shared_ptr<const CompiledGrammar>& g, std::mt19937& rng,
                                         size_t max_tokens = 400, double p_stop = 0.3) {
  GrammarMatcher m(g);
  TokenBitmask mask;
  std::string out;
  const TokenTable& vocab = g->vocab();
  for (size_t i = 0; i < max_tokens; ++i) {
    m.fill_next_token_mask(mask);
    std::vector<int32_t> ids = mask.ids();
    if (ids.empty()) {
      ADD_FAILURE() << "empty mask after " << out;
      return std::nullopt;
    }
    bool stop_allowed = m.can_finish();
    if (stop_allowed && (ids.size() == vocab.stop_ids().size() || std::uniform_real_distribution<>(0, 1)(rng) < p_stop))
      return out;
    std::vector<int32_t> non_stop;
    for (int32_t id : ids)
      if (!vocab.is_stop(id)) non_stop.push_back(id);
    int32_t id = non_stop[std::uniform_int_distribution<size_t>(0, non_stop.size() - 1)(rng)];
    if (!m.accept_token(id)) {
      ADD_FAILURE() << "masked-in token " << id << " refused after " << out;
      return std::nullopt;
    }
    out += vocab.bytes(id);
  }
  return std::nullopt;
}

}  // namespace ds::grammar::testing
