// Structured outputs in the engine: a request may carry a compiled grammar (JSON Schema, regex,
// EBNF; src/grammar) that its output must follow, from the start or once a trigger (the tokens of
// </think> in thinking mode) ends the output. The tracker keeps the request's GrammarMatcher and
// the ids allowed at the next step, which go to sampling like a forced continuation's (rows with
// a mask are sampled on the host). The grammar allows EOS only where the output is complete, so a
// grammar that cannot finish within max_tokens ends with finish_reason "length".
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "grammar/matcher.h"

namespace ds::runtime {

struct GrammarConstraint {
  std::shared_ptr<const grammar::CompiledGrammar> grammar;  // null: no constraint
  std::vector<int32_t> trigger;  // empty: the grammar applies from the first output token
  bool empty() const { return !grammar; }
};

class GrammarTracker {
 public:
  explicit GrammarTracker(const GrammarConstraint& spec);
  // The tokens allowed next, ascending; null while the output is free (before the trigger).
  const std::vector<int32_t>* allowed() const { return active_ ? &allowed_ : nullptr; }
  bool active() const { return active_; }
  // Records a generated token; `history` is prompt + output ending with `token`. False if an
  // active grammar does not allow it (cannot happen when sampling kept to allowed()). After the
  // grammar is finished (a stop token; only with ignore_eos does output go on) only stop tokens
  // are allowed.
  bool accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len);

 private:
  void refresh();
  std::vector<int32_t> trigger_;
  grammar::GrammarMatcher matcher_;
  grammar::TokenBitmask mask_;
  std::vector<int32_t> allowed_;
  bool active_ = false;
};

}  // namespace ds::runtime
