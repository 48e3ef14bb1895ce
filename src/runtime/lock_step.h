// Runs one step on several model runners at once, each on its own thread (the caller's thread takes the
// first): the ranks of a tensor-parallel replica, and under data parallelism every DP group's ranks, whose
// collectives meet inside their forwards. Every runner must get its step (a runner left out would leave
// the others waiting in a collective), so inputs come per runner; the outputs of each group's first rank
// come back (only they draw tokens).
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "runtime/model_runner.h"

namespace ds::runtime {

struct LockStepGroup {
  std::vector<ModelRunner*> runners;  // the group's ranks, its rank 0 (the one that draws) first
  std::optional<StepInput> input;     // nullopt: the group sits this step out (only without DP attention)
};

// Output of each group that ran (nullopt for the ones that sat out), in group order. `also` (may be
// empty) runs on a thread of its own at the same time (waiting for other nodes' ranks). When any of them
// throws, every other one is still waited for, then the first error (in group, rank order; `also` last)
// is rethrown.
std::vector<std::optional<StepOutput>> run_lock_step(std::vector<LockStepGroup>& groups,
                                                     const std::function<void()>& also = {});

}  // namespace ds::runtime
