#include "runtime/step_cancel.h"

namespace ds::runtime {

void StepCancel::begin(std::vector<std::string> ids) {
  std::lock_guard lk(mu_);
  wanted_.clear();
  wanted_.insert(std::make_move_iterator(ids.begin()), std::make_move_iterator(ids.end()));
  in_step_ = true;
  flag_.store(all_, std::memory_order_relaxed);
}

void StepCancel::end() {
  std::lock_guard lk(mu_);
  in_step_ = false;
  wanted_.clear();
}

void StepCancel::abort(const std::string& id) {
  std::lock_guard lk(mu_);
  if (!in_step_ || !wanted_.erase(id)) return;
  if (wanted_.empty()) flag_.store(true, std::memory_order_relaxed);
}

void StepCancel::cancel_all() {
  std::lock_guard lk(mu_);
  all_ = true;
  flag_.store(true, std::memory_order_relaxed);
}

}  // namespace ds::runtime
