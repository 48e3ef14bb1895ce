#include "runtime/forced_continuation.h"

#include <algorithm>

#include "util/error.h"

namespace ds::runtime {

namespace {
const std::vector<int32_t> kAny;
}

ContinuationTracker::ContinuationTracker(const ForcedContinuation& spec) : trigger_(spec.trigger) {
  DS_CHECK(!spec.alternatives.empty(), "a forced continuation needs at least one alternative");
  nodes_.emplace_back();
  for (const auto& alt : spec.alternatives) {
    DS_CHECK(!alt.empty(), "a forced continuation has an empty alternative");
    int32_t n = 0;
    for (size_t i = 0; i < alt.size(); ++i) {
      const bool last = i + 1 == alt.size();
      Node& node = nodes_[size_t(n)];
      auto it = std::lower_bound(node.tokens.begin(), node.tokens.end(), alt[i]);
      const size_t at = size_t(it - node.tokens.begin());
      if (it != node.tokens.end() && *it == alt[i]) {
        // Shared so far: both must go on (an alternative ending here would be a prefix of another).
        DS_CHECK(!last && node.next[at] >= 0, "forced continuation: one alternative is a prefix of another");
        n = node.next[at];
        continue;
      }
      int32_t child = -1;
      if (!last) {
        child = int32_t(nodes_.size());
        nodes_.emplace_back();  // may move `node`: index again below
      }
      Node& again = nodes_[size_t(n)];
      again.tokens.insert(again.tokens.begin() + long(at), alt[i]);
      again.next.insert(again.next.begin() + long(at), child);
      n = child;
    }
  }
  if (trigger_.empty()) state_ = State::Active;
}

const std::vector<int32_t>& ContinuationTracker::allowed() const {
  return state_ == State::Active ? nodes_[size_t(node_)].tokens : kAny;
}

bool ContinuationTracker::trigger_at_end(const std::vector<int32_t>& history, size_t prompt_len) const {
  return history.size() >= prompt_len + trigger_.size() &&
         std::equal(trigger_.begin(), trigger_.end(), history.end() - long(trigger_.size()));
}

void ContinuationTracker::accept(int32_t token, const std::vector<int32_t>& history, size_t prompt_len) {
  switch (state_) {
    case State::Waiting:
      if (trigger_at_end(history, prompt_len)) state_ = State::Active;
      return;
    case State::Active: {
      const Node& node = nodes_[size_t(node_)];
      auto it = std::lower_bound(node.tokens.begin(), node.tokens.end(), token);
      DS_CHECK(it != node.tokens.end() && *it == token, "token {} is outside the forced continuation", token);
      const int32_t child = node.next[size_t(it - node.tokens.begin())];
      if (child < 0) state_ = State::Done;
      else node_ = child;
      return;
    }
    case State::Done: return;
  }
}

}  // namespace ds::runtime
