#include "runtime/lock_step.h"

#include <exception>
#include <future>

namespace ds::runtime {

std::vector<std::optional<StepOutput>> run_lock_step(std::vector<LockStepGroup>& groups) {
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
  auto run = [&out](Job& j) {
    StepOutput o = j.runner->run(std::move(j.in));
    if (j.first) out[j.group] = std::move(o);  // each job writes its own group's slot, no two the same
  };
  if (jobs.empty()) return out;
  std::vector<std::future<void>> others;
  for (size_t i = 1; i < jobs.size(); ++i) others.push_back(std::async(std::launch::async, run, std::ref(jobs[i])));
  std::exception_ptr error;
  try {
    run(jobs[0]);
  } catch (...) {
    error = std::current_exception();
  }
  for (auto& f : others) try {
      f.get();
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace ds::runtime
