// Forced continuations: "once the output reaches a trigger, it must go on with one of these token
// sequences". This is how tool_choice "required" / a named function is enforced: after the reasoning
// (the trigger is </think>'s tokens; empty when the prompt already closed it) the model can only
// open a call to one of the allowed tools; the arguments that follow are the model's own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ds::runtime {

struct ForcedContinuation {
  std::vector<int32_t> trigger;                     // empty: the constraint applies from the first token
  std::vector<std::vector<int32_t>> alternatives;   // non-empty, none a prefix of another
  bool empty() const { return alternatives.empty(); }
};

// Follows one request's output through the constraint: the trie of the alternatives, walked token
// by token once the trigger has appeared at the end of the output.
class ContinuationTracker {
 public:
  // Throws ds::Error if an alternative is empty or a prefix of another (the walk could not tell
  // where the constraint ends).
  explicit ContinuationTracker(const ForcedContinuation& spec);

  // The tokens allowed next, ascending; empty while the output is free (before the trigger, after
  // an alternative is complete).
  const std::vector<int32_t>& allowed() const;
  bool constraining() const { return state_ == State::Active; }
  bool done() const { return state_ == State::Done; }
  // Records a generated token: `history` is the prompt (its first prompt_len ids) and the output so
  // far, ending with `token`. The trigger counts only where it lies wholly in the output.
  void accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len);

 private:
  struct Node {
    std::vector<int32_t> tokens;  // allowed next tokens, ascending
    std::vector<int32_t> next;    // child node of each, -1 where an alternative ends
  };
  enum class State { Waiting, Active, Done };
  bool trigger_at_end(const std::vector<int32_t>& history, size_t prompt_len) const;

  std::vector<int32_t> trigger_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  State state_ = State::Waiting;
  int32_t node_ = 0;
};

}  // namespace ds::runtime
