// Runs one step on several model runners at once, each on its own thread (the caller's thread takes the
// first): the ranks of a tensor-parallel replica, and under data parallelism every DP group's ranks, whose
// collectives meet inside their forwards. Every runner must get its step (a runner left out would leave
// the others waiting in a collective), so inputs come per runner; the outputs of each group's first rank
// come back (only they draw tokens).
#pragma once
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "runtime/model_runner.h"

namespace ds::runtime {

struct LockStepGroup {
  std::vector<ModelRunner*> runners;  // the group's ranks, its rank 0 (the one that draws) first
  std::optional<StepInput> input;     // nullopt: the group sits this step out (only without DP attention)
};

// Threads that stay: job k of every step runs on thread k (the first on the caller), so a rank keeps
// its thread from step to step, with its CUDA device current and its OpenMP pool warm, and a step starts
// no threads (std::async per rank per step cost tens of microseconds).
class LockStepThreads {
 public:
  LockStepThreads();
  ~LockStepThreads();
  LockStepThreads(const LockStepThreads&) = delete;
  LockStepThreads& operator=(const LockStepThreads&) = delete;
  // Runs every job, jobs[0] on the calling thread; returns each job's exception (null: fine) once all
  // have ended.
  std::vector<std::exception_ptr> run(const std::vector<std::function<void()>>& jobs);

 private:
  struct Worker;
  std::vector<std::unique_ptr<Worker>> workers_;
};

// Output of each group that ran (nullopt for the ones that sat out), in group order. `also` (may be
// empty) runs on a thread of its own at the same time (waiting for other nodes' ranks). When any of them
// throws, every other one is still waited for, then the first error (in group, rank order; `also` last)
// is rethrown.
// threads: where the ranks run (null: a thread per rank for this step only).
std::vector<std::optional<StepOutput>> run_lock_step(std::vector<LockStepGroup>& groups,
                                                     const std::function<void()>& also = {},
                                                     LockStepThreads* threads = nullptr);

}  // namespace ds::runtime
