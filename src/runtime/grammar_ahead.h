// One request's grammar work of a step, done ahead of the step's serial output phase (engine_grammar_ahead.cpp):
// on the mask pool, in parallel over the step's grammar requests, each tracker is advanced through the drawn
// token(s) and the jump-forward tokens after them. The serial phase (text, stop strings, EOS, max_tokens,
// delivery, in plan order) then takes the grammar's verdicts from here instead of asking the grammar, and
// rewinds the tracker to the last token it took when a stop string or max_tokens ended the request earlier.
// Internal to the engine.
#pragma once
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "runtime/grammar_constraint.h"

namespace ds::runtime::engine_internal {

struct GrammarAhead {
  struct Step {  // the grammar's answer to one token, in the order the serial phase accepts them
    bool allowed = true;      // false: refused (the request ends with an error; the tracker did not move)
    bool terminated = false;  // the grammar accepted its end with it
    GrammarTracker::Checkpoint after;
  };
  bool walked = false;           // false: the serial phase asks the grammar itself (as without a walk)
  std::vector<Step> steps;       // drawn tokens, then the forced ones
  std::vector<int32_t> forced;   // jump-forward tokens, accepted by the walk after step forced_after - 1
  size_t forced_after = 0;
  size_t taken = 0;              // steps the serial phase has used
  // What the grammar threw after error_at steps: rethrown when the serial phase gets there, where the
  // grammar would have been called without the walk (so a step fails as it did).
  std::exception_ptr error;
  size_t error_at = 0;
};

}  // namespace ds::runtime::engine_internal
