// `dsserve bench model --tp N`: the same decode and prefill measurements as model_bench_run.h with the
// model cut over N tensor-parallel ranks (model/tensor_parallel.h), every rank's runner stepping at once
// on its own thread. Per rank: step time, bytes it read against the HBM roofline, and (CPU ranks) the
// time its collectives took; the step of the replica is its slowest rank.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "dist/group.h"
#include "perf/model_bench_run.h"

namespace ds::perf {

// backends[r] and groups[r] belong to rank r. --extrapolate-to and --profile are refused with --tp.
// f.dp > 1: DP attention; attn_groups[r] is rank r's handle of its DP group (groups of tp / dp
// consecutive ranks; empty when those have one rank). Decode only.
void run_model_bench_tp(const ModelBenchOptions& f, std::vector<std::unique_ptr<backend::Backend>> backends,
                        std::vector<std::unique_ptr<dist::Group>> groups,
                        std::vector<std::unique_ptr<dist::Group>> attn_groups = {});

}  // namespace ds::perf
