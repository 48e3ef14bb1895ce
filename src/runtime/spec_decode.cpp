#include "runtime/spec_decode.h"

#include <algorithm>

#include "runtime/device_sampling.h"
#include "runtime/request_state.h"

namespace ds::runtime {

bool speculates(const GenerateRequest& in) {
  return !has_penalties(in.sampling) && in.grammar.empty() && in.forced.empty();
}

bool record_verify(RequestState& r, int32_t emitted, double min_accept_length) {
  if (min_accept_length <= 0) return false;
  r.spec_recent.push_back(int8_t(std::min(emitted, 127)));
  if (r.spec_recent.size() > kSpecWindow) r.spec_recent.erase(r.spec_recent.begin());
  if (r.spec_recent.size() < kSpecWindow) return false;
  double sum = 0;
  for (int8_t n : r.spec_recent) sum += n;
  if (sum / double(kSpecWindow) >= min_accept_length) return false;
  r.speculate = false;
  r.draft.clear();
  return true;
}

int32_t draft_budget(const RequestState& r, int32_t steps, int32_t context_length) {
  const int64_t by_output = int64_t(r.in.max_new_tokens) - r.output_len() - 1;
  // The verify step runs positions up to tokens - 1 + drafts, the chain after it up to tokens + steps - 2.
  const int64_t by_context = int64_t(context_length) - int64_t(r.tokens.size()) - steps;
  return int32_t(std::max<int64_t>(0, std::min<int64_t>({steps, by_output, by_context})));
}

}  // namespace ds::runtime
