#include "runtime/grammar_constraint.h"

#include <algorithm>


namespace ds::runtime {

GrammarTracker::GrammarTracker(const GrammarConstraint& spec) : trigger_(spec.trigger), matcher_(spec.grammar) {
  if (trigger_.empty()) {
    active_ = true;
    refresh();
  }
}

void GrammarTracker::refresh() {
  matcher_.fill_next_token_mask(mask_);
  allowed_ = mask_.ids();
  // An empty mask cannot happen for a grammar that can still finish; keep sampling defined anyway:
  // the stop tokens end the output.
  if (allowed_.empty()) allowed_ = matcher_.grammar().vocab().stop_ids();
}

bool GrammarTracker::accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len) {
  if (!active_) {
    if (history.size() >= prompt_len + trigger_.size() &&
        std::equal(trigger_.begin(), trigger_.end(), history.end() - long(trigger_.size()))) {
      active_ = true;
      refresh();
    }
    return true;
  }
  if (matcher_.finished()) return matcher_.grammar().vocab().is_stop(token);
  if (!matcher_.accept_token(token)) return false;
  if (matcher_.finished()) {
    allowed_ = matcher_.grammar().vocab().stop_ids();
  } else {
    refresh();
  }
  return true;
}

}  // namespace ds::runtime
