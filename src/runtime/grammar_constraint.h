// Structured outputs in the engine: a request may carry a compiled grammar (JSON Schema, regex,
// EBNF, a tool-call block; src/grammar) that its output must follow, from the start or once a
// trigger (the tokens of </think> in thinking mode) ends the output. The tracker keeps the
// request's GrammarMatcher and the bitmask of the tokens allowed at the next step, which goes to
// sampling (on the device as a bitmask where the backend samples; as an id list on the host). The
// grammar allows EOS only where the output is complete, so a grammar that cannot finish within
// max_tokens ends with finish_reason "length".
// accept() only advances the matcher; the next mask is computed by prepare(), which the engine
// runs while the step's forward is on the device (before that step's sampling reads the mask).
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
  // The tokens allowed next as bits (bit i % 64 of word i / 64; ids past the words are not
  // allowed), filled by prepare(); null while the output is free (before the trigger). Never
  // empty. The pointer stays valid for the tracker's life.
  const std::vector<uint64_t>* allowed_bits() const { return active_ ? &mask_.words : nullptr; }
  bool active() const { return active_; }
  // Computes the mask of the next token if accept() (or the start) left it stale; cheap otherwise.
  // Safe to run for different trackers on different threads at once.
  void prepare();
  bool needs_prepare() const { return stale_; }
  // Records a generated token; `history` is prompt + output ending with `token`. False if an
  // active grammar does not allow it (cannot happen when sampling kept to the mask). After the
  // grammar is finished (a stop token; only with ignore_eos does output go on) only stop tokens
  // are allowed.
  bool accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len);

 private:
  void only_stop_tokens();
  std::vector<int32_t> trigger_;
  grammar::GrammarMatcher matcher_;
  grammar::TokenBitmask mask_;
  bool active_ = false;
  bool stale_ = false;  // mask_ is not yet the mask after the last accepted token
};

}  // namespace ds::runtime
