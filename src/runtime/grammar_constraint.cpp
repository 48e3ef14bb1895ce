#include "runtime/grammar_constraint.h"

#include <algorithm>

namespace ds::runtime {

GrammarTracker::GrammarTracker(const GrammarConstraint& spec) : trigger_(spec.trigger), matcher_(spec.grammar) {
  if (trigger_.empty()) {
    active_ = true;
    stale_ = true;
  }
}

void GrammarTracker::only_stop_tokens(grammar::TokenBitmask& mask) {
  mask.reset(matcher_.grammar().vocab().vocab_size());
  for (int32_t id : matcher_.grammar().vocab().stop_ids()) mask.set(id);
}

void GrammarTracker::fill_mask(grammar::TokenBitmask& mask) {
  if (matcher_.finished()) {
    only_stop_tokens(mask);
    return;
  }
  matcher_.fill_next_token_mask(mask);
  // An empty mask cannot happen for a grammar that can still finish; keep sampling defined anyway:
  // the stop tokens end the output.
  if (std::all_of(mask.words.begin(), mask.words.end(), [](uint64_t w) { return w == 0; })) only_stop_tokens(mask);
}

void GrammarTracker::prepare() {
  if (stale_) {
    stale_ = false;
    fill_mask(mask_);
  }
  if (!rows_stale_) return;
  rows_stale_ = false;
  // Walk the drafts, filling each row's mask, then come back.
  const Mark start = mark();
  bool alive = true;
  for (size_t j = 1; j <= row_drafts_.size(); ++j) {
    // A refused draft changes nothing: the rows after it get the mask before it (never read, but defined).
    const std::span<const int32_t> so_far(row_drafts_.data(), j);
    alive = alive && advance(row_drafts_[j - 1], *row_history_, so_far, row_prompt_len_);
    if (row_active_[j]) fill_mask(row_masks_[j - 1]);
  }
  restore(start);
}

void GrammarTracker::restore(const Mark& m) {
  matcher_.rollback(matcher_.steps_accepted() - m.steps);
  active_ = m.active;
}

bool GrammarTracker::advance(int32_t token, const std::vector<int32_t>& history, std::span<const int32_t> extra,
                             size_t prompt_len) {
  if (!active_) {
    // Active once history + extra ends with the trigger, inside the output.
    const size_t n = history.size() + extra.size(), t = trigger_.size();
    if (n < prompt_len + t) return true;
    for (size_t k = 0; k < t; ++k) {
      const size_t pos = n - t + k;
      if ((pos < history.size() ? history[pos] : extra[pos - history.size()]) != trigger_[k]) return true;
    }
    active_ = true;
    return true;
  }
  if (matcher_.finished()) return matcher_.grammar().vocab().is_stop(token);
  return matcher_.accept_token(token);
}

bool GrammarTracker::accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len) {
  return accept(token, history, {}, prompt_len);
}

bool GrammarTracker::accept(int32_t token, const std::vector<int32_t>& history, std::span<const int32_t> pending,
                            size_t prompt_len) {
  if (!advance(token, history, pending, prompt_len)) return false;
  if (active_) stale_ = true;
  rows_stale_ = false;  // the rows planned for this step are used up
  return true;
}

void GrammarTracker::rewind(const Checkpoint& c) {
  restore({c.steps, c.active});
  stale_ = c.stale || c.active;  // a mask computed since then is not the checkpoint's
}

std::vector<int32_t> GrammarTracker::jump_forward(const grammar::EncodeFn& encode, int32_t prev_token,
                                                  const grammar::JumpForwardOptions& options) {
  if (!active_ || matcher_.finished()) return {};
  return grammar::jump_forward_tokens(matcher_, encode, prev_token, options);
}

size_t GrammarTracker::allowed_drafts(std::span<const int32_t> drafts, const std::vector<int32_t>& history,
                                      size_t prompt_len) {
  const Mark start = mark();
  size_t n = 0;
  while (n < drafts.size() && advance(drafts[n], history, drafts.first(n + 1), prompt_len)) ++n;
  restore(start);
  return n;
}

void GrammarTracker::plan_rows(std::span<const int32_t> drafts, const std::vector<int32_t>& history,
                               size_t prompt_len) {
  row_drafts_.assign(drafts.begin(), drafts.end());
  row_history_ = &history;
  row_prompt_len_ = prompt_len;
  // Which rows are constrained: the grammar applies from the row after the trigger's last token on.
  row_active_.assign(drafts.size() + 1, 0);
  row_active_[0] = active_;
  const Mark start = mark();
  bool alive = true;
  for (size_t j = 1; j <= drafts.size(); ++j) {
    alive = alive && advance(drafts[j - 1], history, drafts.first(j), prompt_len);
    row_active_[j] = active_;
  }
  restore(start);
  if (row_masks_.size() < drafts.size()) row_masks_.resize(drafts.size());
  rows_stale_ = !drafts.empty();
}

const std::vector<uint64_t>* GrammarTracker::row_bits(size_t j) const {
  if (j == 0) return allowed_bits();
  return j < row_active_.size() && row_active_[j] ? &row_masks_[j - 1].words : nullptr;
}

}  // namespace ds::runtime
