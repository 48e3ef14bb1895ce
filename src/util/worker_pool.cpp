#include "util/worker_pool.h"

#include <algorithm>

namespace ds {

WorkerPool::WorkerPool(size_t threads) {
  const size_t hw = std::max<size_t>(std::thread::hardware_concurrency(), 1);
  want_ = threads ? threads : std::min<size_t>(hw - 1, 15);
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::start() {
  threads_.reserve(want_);
  for (size_t i = 0; i < want_; ++i) threads_.emplace_back([this] { work(); });
}

// Takes items of the current loop until none is left (mu_ held on entry and exit).
void WorkerPool::run_items() {
  std::unique_lock lk(mu_, std::adopt_lock);
  while (next_ < n_) {
    const size_t i = next_++;
    const auto* f = f_;
    lk.unlock();
    (*f)(i);
    lk.lock();
    if (++finished_ == n_) done_.notify_all();
  }
  lk.release();
}

void WorkerPool::work() {
  size_t seen = 0;
  std::unique_lock lk(mu_);
  for (;;) {
    wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    ++busy_;
    lk.release();
    run_items();
    lk = std::unique_lock(mu_, std::adopt_lock);
    if (--busy_ == 0) done_.notify_all();
  }
}

void WorkerPool::parallel_for(size_t n, const std::function<void(size_t)>& f) {
  if (n == 0) return;
  if (n == 1 || want_ == 0) {
    for (size_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::lock_guard call(call_mu_);
  std::unique_lock lk(mu_);
  if (threads_.empty()) start();
  f_ = &f;
  n_ = n, next_ = 0, finished_ = 0;
  ++generation_;
  wake_.notify_all();
  lk.release();
  run_items();
  lk = std::unique_lock(mu_, std::adopt_lock);
  // Every item done, and no worker still between its last item and going back to sleep (it reads f_).
  done_.wait(lk, [&] { return finished_ == n_ && busy_ == 0; });
  f_ = nullptr;
}

}  // namespace ds
