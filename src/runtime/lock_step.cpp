#include "runtime/lock_step.h"

#include <exception>
#include <future>

#include "dist/group.h"

namespace ds::runtime {

std::vector<std::optional<StepOutput>> run_lock_step(std::vector<LockStepGroup>& groups,
                                                     const std::function<void()>& also) {
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
  std::future<void> also_done;
  if (also) also_done = std::async(std::launch::async, also);
  if (jobs.empty()) {
    if (also_done.valid()) also_done.get();
    return out;
  }
  std::vector<std::future<void>> others;
  for (size_t i = 1; i < jobs.size(); ++i) others.push_back(std::async(std::launch::async, run, std::ref(jobs[i])));
  // The error to report: the first rank's own failure (GroupAborted::origin) where one says so, else the
  // first error; the others are its echoes (ranks that found their group gone).
  std::exception_ptr error, origin;
  auto keep = [&] {
    if (!error) error = std::current_exception();
    try {
      throw;
    } catch (const dist::GroupAborted& g) {
      if (g.origin && !origin) origin = std::current_exception();
    } catch (...) {
    }
  };
  try {
    run(jobs[0]);
  } catch (...) {
    keep();
  }
  for (auto& f : others) try {
      f.get();
    } catch (...) {
      keep();
    }
  if (also_done.valid()) try {
      also_done.get();
    } catch (...) {
      keep();
    }
  if (origin) std::rethrow_exception(origin);
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace ds::runtime
