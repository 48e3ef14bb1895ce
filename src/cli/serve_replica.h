// The model replica `dsserve serve` (and the other commands with --tp) runs: --tp ranks on
// consecutive GPUs (--base-gpu-id, --gpu-id-step as SGLang) joined by NCCL, or CPU ranks sharing the
// cores (--threads) joined by a LocalGroup.
#pragma once
#include <string>

#include "runtime/model_runner.h"
#include "runtime/replica.h"

namespace ds::cli {

struct ReplicaFlags {
  std::string device = "cpu";
  int threads = 0;  // CPU: for all ranks together (0: every core)
  int base_gpu_id = 0, gpu_id_step = 1;
  model::ModelOptions model_options;  // every rank's (the draft head is made at load)
  bool random_weights = false;        // --load-format dummy (runtime::ReplicaSpec::random_weights)
  bool custom_all_reduce = true;      // CUDA: small all-reduces over peer memory (--disable-custom-all-reduce)
};

// Loads `model_path` over parallel.world_size() ranks; rank r runs on GPU base + r * step.
runtime::Replica load_serving_replica(const std::string& model_path, const runtime::ParallelConfig& parallel,
                                      const ReplicaFlags& f);
int gpu_of_rank(const ReplicaFlags& f, int rank);
// Rank `rank` of `ranks`'s backend: its GPU, or a CPU backend with its share of --threads (all cores when 0).
std::unique_ptr<backend::Backend> make_rank_backend(const ReplicaFlags& f, int rank, int ranks);
// The group joining `backends` (one per rank): NCCL for CUDA backends (with the custom all-reduce for
// small messages where DSSERVE_CUSTOM_AR_MAX_BYTES turns it on, unless custom_all_reduce is false), a
// LocalGroup on the CPU.
std::vector<std::unique_ptr<dist::Group>> make_rank_groups(const std::string& device,
                                                           const std::vector<backend::Backend*>& backends,
                                                           bool custom_all_reduce);

// This process's ranks' memory for the KV plan (runtime/kv_plan.h): on GPUs the tightest free memory
// before loading and the most any rank's weights took; on the CPU each rank's share of the available RAM
// (reserved 0). Every rank gets the same pool, so the tightest decides.
struct RankMemory {
  int64_t available = 0, reserved = 0;
};
RankMemory replica_memory(const runtime::Replica& replica, const std::string& device);

// Runners over this process's ranks (they take the replica's backends and models), each with `rc` and its
// place in `parallel`, grouped by DP group (the engine's groups; a group with no rank here is empty).
struct RankRunners {
  std::vector<std::unique_ptr<runtime::ModelRunner>> owned;
  std::vector<runtime::ModelRunner*> all;
  std::vector<std::vector<runtime::ModelRunner*>> groups;
};
RankRunners make_rank_runners(runtime::Replica& replica, runtime::RunnerConfig rc,
                              const runtime::ParallelConfig& parallel, const ReplicaFlags& f);

// Ranks record their CUDA graphs together: a recorded step holds the group's collectives, which every rank
// must issue at the same time (on every node: each node calls this at once).
void record_graphs_on_all(const std::vector<runtime::ModelRunner*>& runners, int32_t max_batch, int32_t max_context);

}  // namespace ds::cli
