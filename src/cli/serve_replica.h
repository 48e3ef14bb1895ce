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
};

// Loads `model_path` over parallel.world_size() ranks; rank r runs on GPU base + r * step.
runtime::Replica load_serving_replica(const std::string& model_path, const runtime::ParallelConfig& parallel,
                                      const ReplicaFlags& f);
int gpu_of_rank(const ReplicaFlags& f, int rank);
// Rank `rank` of `ranks`'s backend: its GPU, or a CPU backend with its share of --threads (all cores when 0).
std::unique_ptr<backend::Backend> make_rank_backend(const ReplicaFlags& f, int rank, int ranks);
// The group joining `backends` (one per rank): NCCL for CUDA backends, a LocalGroup on the CPU.
std::vector<std::unique_ptr<dist::Group>> make_rank_groups(const std::string& device,
                                                           const std::vector<backend::Backend*>& backends);

// Ranks record their CUDA graphs together: a recorded step holds the group's collectives, which every rank
// must issue at the same time (on every node: each node calls this at once).
void record_graphs_on_all(const std::vector<runtime::ModelRunner*>& runners, int32_t max_batch, int32_t max_context);

}  // namespace ds::cli
