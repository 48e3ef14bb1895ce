// Structured outputs in the engine: a request may carry a compiled grammar (JSON Schema, regex,
// EBNF, a tool-call block; src/grammar) that its output must follow, from the start or once a
// trigger (the tokens of </think> in thinking mode) ends the output. The tracker keeps the
// request's GrammarMatcher and the bitmask of the tokens allowed at the next step, which goes to
// sampling (on the device as a bitmask where the backend samples; as an id list on the host). The
// grammar allows EOS only where the output is complete, so a grammar that cannot finish within
// max_tokens ends with finish_reason "length".
// accept() only advances the matcher; the next mask is computed by prepare(), which the engine
// runs while the step's forward is on the device (before that step's sampling reads the mask).
// Speculative decoding: a verify step samples a row per draft prefix, each under the mask of the
// state after that prefix (plan_rows, then prepare computes them all on a walk through the drafts
// that is rolled back); accept() then advances through the tokens actually emitted.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "grammar/jump_forward.h"
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
  bool needs_prepare() const { return stale_ || rows_stale_; }
  // Records a generated token; `history` is prompt + output ending with `token`. False if an
  // active grammar does not allow it (cannot happen when sampling kept to the mask). After the
  // grammar is finished (it accepted a stop token) only stop tokens are allowed (verify rows past it).
  bool accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len);
  // The same for a token not yet appended to `history`: history + pending is the output so far, ending
  // with `token` (the engine's grammar walk ahead of a step's outputs, engine_grammar_ahead.cpp).
  bool accept(int32_t token, const std::vector<int32_t>& history, std::span<const int32_t> pending,
              size_t prompt_len);
  // The grammar accepted its stop token: the request ends there, with or without ignore_eos (SGLang
  // finishes a request whose grammar terminated before it looks at ignore_eos or max_new_tokens).
  bool terminated() const { return active_ && matcher_.finished(); }

  // The state after some accept()s, to come back to: the walk ahead went past where the request ended.
  struct Checkpoint {
    size_t steps = 0;
    bool active = false, stale = false;
  };
  Checkpoint checkpoint() const { return {matcher_.steps_accepted(), active_, stale_}; }
  // Back to `c`, taken on this tracker before the accept()s since (it never moves forward).
  void rewind(const Checkpoint& c);

  // Jump-forward (grammar/jump_forward.h): the tokens the grammar forces after `prev_token` (the last
  // token of the history); empty while the output is free or the grammar finished. Nothing changes:
  // the engine accept()s them as it does sampled tokens.
  std::vector<int32_t> jump_forward(const grammar::EncodeFn& encode, int32_t prev_token,
                                    const grammar::JumpForwardOptions& options);

  // Speculative decoding. How many of `drafts` (proposed after `history`) the grammar allows in a row:
  // a draft it refuses could never be accepted, nor any after it.
  size_t allowed_drafts(std::span<const int32_t> drafts, const std::vector<int32_t>& history, size_t prompt_len);
  // The next verify step samples rows 0..drafts.size(): row j under the mask after drafts[0, j).
  // Sets which rows are constrained (row_bits); prepare() fills them. A draft the grammar refuses
  // leaves the rows after it the mask before it (never read: that draft cannot be accepted).
  void plan_rows(std::span<const int32_t> drafts, const std::vector<int32_t>& history, size_t prompt_len);
  // Row j's mask (row 0: allowed_bits()); null where the output is still free. Valid after prepare().
  const std::vector<uint64_t>* row_bits(size_t j) const;

 private:
  struct Mark {  // a state to come back to after a walk through drafts
    size_t steps;
    bool active;
  };
  Mark mark() const { return {matcher_.steps_accepted(), active_}; }
  void restore(const Mark& m);
  // accept() without marking the mask stale; history + extra ends with `token`.
  bool advance(int32_t token, const std::vector<int32_t>& history, std::span<const int32_t> extra, size_t prompt_len);
  void fill_mask(grammar::TokenBitmask& mask);
  void only_stop_tokens(grammar::TokenBitmask& mask);
  std::vector<int32_t> trigger_;
  grammar::GrammarMatcher matcher_;
  grammar::TokenBitmask mask_;
  bool active_ = false;
  bool stale_ = false;  // mask_ is not yet the mask after the last accepted token
  // Verify rows 1..n (row 0 is mask_): the drafts and the history they follow (the request's tokens,
  // unchanged until the step's tokens are accepted), whether each row is constrained, and their masks
  // (filled by prepare while rows_stale_).
  std::vector<int32_t> row_drafts_;
  const std::vector<int32_t>* row_history_ = nullptr;
  size_t row_prompt_len_ = 0;
  std::vector<uint8_t> row_active_;
  std::vector<grammar::TokenBitmask> row_masks_;
  bool rows_stale_ = false;
};

}  // namespace ds::runtime
