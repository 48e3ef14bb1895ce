#include "runtime/grammar_constraint.h"

#include <algorithm>

namespace ds::runtime {

GrammarTracker::GrammarTracker(const GrammarConstraint& spec) : trigger_(spec.trigger), matcher_(spec.grammar) {
  if (trigger_.empty()) {
    active_ = true;
    stale_ = true;
  }
}

void GrammarTracker::only_stop_tokens() {
  mask_.reset(matcher_.grammar().vocab().vocab_size());
  for (int32_t id : matcher_.grammar().vocab().stop_ids()) mask_.set(id);
}

void GrammarTracker::prepare() {
  if (!stale_) return;
  stale_ = false;
  if (matcher_.finished()) {
    only_stop_tokens();
    return;
  }
  matcher_.fill_next_token_mask(mask_);
  // An empty mask cannot happen for a grammar that can still finish; keep sampling defined anyway:
  // the stop tokens end the output.
  if (std::all_of(mask_.words.begin(), mask_.words.end(), [](uint64_t w) { return w == 0; })) only_stop_tokens();
}

bool GrammarTracker::accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len) {
  if (!active_) {
    if (history.size() >= prompt_len + trigger_.size() &&
        std::equal(trigger_.begin(), trigger_.end(), history.end() - long(trigger_.size()))) {
      active_ = true;
      stale_ = true;
    }
    return true;
  }
  if (matcher_.finished()) return matcher_.grammar().vocab().is_stop(token);
  if (!matcher_.accept_token(token)) return false;
  stale_ = true;
  return true;
}

}  // namespace ds::runtime
