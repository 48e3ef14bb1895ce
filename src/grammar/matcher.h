// One request's walk through a compiled grammar: accept tokens (or raw bytes), roll back (for
// speculative decoding and retries), ask whether the output may end, and get the mask of tokens
// allowed next. Not thread-safe; one per request. The grammar may be shared.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/compiled_grammar.h"
#include "grammar/stack_set.h"

namespace ds::grammar {

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);

  // False (and nothing changes) when the token is not allowed here. A stop token is allowed
  // exactly when can_finish(); after it the matcher is finished().
  bool accept_token(int32_t id);
  // The bytes as one step; false and unchanged if the grammar does not allow all of them.
  bool accept_bytes(std::string_view bytes);
  // Undoes the last `steps` accepted tokens / byte strings (at most steps_accepted()).
  void rollback(size_t steps);
  size_t steps_accepted() const { return history_.size() - 1; }

  bool can_finish() const;  // what was accepted is a whole sentence of the grammar
  bool finished() const { return history_.back().finished; }
  // Nothing but the end can follow (so only stop tokens are allowed).
  bool must_finish();

  // Bit i set: token i is allowed next. Stop tokens are set when can_finish().
  void fill_next_token_mask(TokenBitmask& mask);
  // The bytes every continuation must start with (jump-forward), at most max_bytes.
  std::string forced_bytes(size_t max_bytes = 256);

  const CompiledGrammar& grammar() const { return *grammar_; }

 private:
  struct Step {
    Kernel kernel;
    size_t arena_mark;  // arena size before this step's frames
    bool finished = false;
  };
  bool walk(const Kernel& from, std::string_view bytes, Kernel& out);

  std::shared_ptr<const CompiledGrammar> grammar_;
  FrameArena arena_;
  StackStepper stepper_;
  std::vector<Step> history_;
  std::vector<Kernel> scratch_;
};

// Whole-string match (for tests and tools).
bool grammar_matches(const std::shared_ptr<const CompiledGrammar>& grammar, std::string_view text);

}  // namespace ds::grammar
