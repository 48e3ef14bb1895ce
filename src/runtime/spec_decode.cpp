#include "runtime/spec_decode.h"

#include <algorithm>

#include "runtime/device_sampling.h"
#include "runtime/request_state.h"

namespace ds::runtime {

bool speculates(const GenerateRequest& in) {
  return !has_penalties(in.sampling) && in.forced.empty();
}

bool SpecPause::record(int64_t step, int64_t tokens, int64_t requests, double min_accept_length) {
  if (min_accept_length <= 0 || requests == 0) return false;
  window_.push_back(double(tokens) / double(requests));
  if (window_.size() > kSpecWindow) window_.erase(window_.begin());
  if (window_.size() < kSpecWindow) return false;
  double sum = 0;
  for (double x : window_) sum += x;
  if (sum / double(kSpecWindow) >= min_accept_length) {
    next_pause_ = kSpecPauseSteps;
    return false;
  }
  window_.clear();  // the next try starts afresh
  last_pause_ = next_pause_;
  until_ = step + 1 + last_pause_;
  next_pause_ = std::min(2 * next_pause_, kSpecPauseMaxSteps);
  ++pauses_;
  return true;
}

int32_t draft_budget(const RequestState& r, int32_t steps, int32_t context_length, bool count_output) {
  const int64_t by_output = count_output ? int64_t(r.in.max_new_tokens) - r.output_len() - 1 : int64_t(steps);
  // The verify step runs positions up to tokens - 1 + drafts, the chain after it up to tokens + steps - 2.
  const int64_t by_context = int64_t(context_length) - int64_t(r.tokens.size()) - steps;
  return int32_t(std::max<int64_t>(0, std::min<int64_t>({steps, by_output, by_context})));
}

}  // namespace ds::runtime
