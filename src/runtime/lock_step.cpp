#include "runtime/lock_step.h"

#include <exception>
#include <future>

#include "dist/group.h"

namespace ds::runtime {

struct LockStepThreads::Worker {
  std::mutex mu;
  std::condition_variable cv;
  const std::function<void()>* job = nullptr;  // set: run it
  bool done = false, stop = false;
  std::exception_ptr error;
  std::thread thread;

  Worker() : thread([this] { loop(); }) {}
  ~Worker() {
    {
      std::lock_guard lk(mu);
      stop = true;
    }
    cv.notify_all();
    thread.join();
  }
  void loop() {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stop || job; });
      if (stop) return;
      const std::function<void()>* j = job;
      lk.unlock();
      std::exception_ptr e;
      try {
        (*j)();
      } catch (...) {
        e = std::current_exception();
      }
      lk.lock();
      job = nullptr;
      error = e;
      done = true;
      cv.notify_all();
    }
  }
};

LockStepThreads::LockStepThreads() = default;
LockStepThreads::~LockStepThreads() = default;

std::vector<std::exception_ptr> LockStepThreads::run(const std::vector<std::function<void()>>& jobs) {
  std::vector<std::exception_ptr> errors(jobs.size());
  if (jobs.empty()) return errors;
  while (workers_.size() + 1 < jobs.size()) workers_.push_back(std::make_unique<Worker>());
  for (size_t k = 1; k < jobs.size(); ++k) {
    Worker& w = *workers_[k - 1];
    std::lock_guard lk(w.mu);
    w.job = &jobs[k];
    w.done = false;
    w.cv.notify_all();
  }
  try {
    jobs[0]();
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (size_t k = 1; k < jobs.size(); ++k) {
    Worker& w = *workers_[k - 1];
    std::unique_lock lk(w.mu);
    w.cv.wait(lk, [&] { return w.done; });
    errors[k] = w.error;
  }
  return errors;
}

std::vector<std::optional<StepOutput>> run_lock_step(std::vector<LockStepGroup>& groups,
                                                     const std::function<void()>& also, LockStepThreads* threads) {
  std::vector<std::optional<StepOutput>> out(groups.size());
  struct Job {
    size_t group;
    ModelRunner* runner;
    bool first;  // the group's rank 0: its output is the group's
    StepInput in;
  };
  std::vector<Job> jobs;
  // Every rank gets its own copy of its group's input (a runner consumes it); the group's rank 0 the
  // original, moved in once the copies are made.
  for (size_t g = 0; g < groups.size(); ++g)
    if (groups[g].input)
      for (size_t k = 0; k < groups[g].runners.size(); ++k)
        jobs.push_back({g, groups[g].runners[k], k == 0, k == 0 ? StepInput{} : *groups[g].input});
  for (Job& j : jobs)
    if (j.first) j.in = std::move(*groups[j.group].input);
  // The ranks' jobs, then `also` last (the caller's thread takes the first job).
  std::vector<std::function<void()>> fns;
  for (Job& j : jobs)
    fns.push_back([&out, &j] {
      StepOutput o = j.runner->run(std::move(j.in));
      if (j.first) out[j.group] = std::move(o);  // each job writes its own group's slot, no two the same
    });
  if (also) fns.push_back(also);
  std::vector<std::exception_ptr> errors(fns.size());
  if (threads) {
    errors = threads->run(fns);
  } else if (!fns.empty()) {
    std::vector<std::future<void>> others;
    for (size_t i = 1; i < fns.size(); ++i) others.push_back(std::async(std::launch::async, fns[i]));
    try {
      fns[0]();
    } catch (...) {
      errors[0] = std::current_exception();
    }
    for (size_t i = 1; i < fns.size(); ++i) try {
        others[i - 1].get();
      } catch (...) {
        errors[i] = std::current_exception();
      }
  }
  // The error to report: the first rank's own failure (GroupAborted::origin) where one says so, else the
  // first error; the others are its echoes (ranks that found their group gone).
  std::exception_ptr first, origin;
  for (auto& e : errors) {
    if (!e) continue;
    if (!first) first = e;
    try {
      std::rethrow_exception(e);
    } catch (const dist::GroupAborted& g) {
      if (g.origin && !origin) origin = e;
    } catch (...) {
    }
  }
  if (origin) std::rethrow_exception(origin);
  if (first) std::rethrow_exception(first);
  return out;
}

}  // namespace ds::runtime
