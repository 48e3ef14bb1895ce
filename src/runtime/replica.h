// The model over all ranks of the deployment (issue 14): --tp ranks per replica, --dp replicas (or, with
// DP attention, --dp groups inside the --tp ranks): a backend per rank, the process groups whose
// collectives join them, and each rank's part of the model, loaded at once on one thread per rank (each
// reads only its slices of the mmapped checkpoint). Ranks are threads of this process, one
// per GPU (docs/ARCHITECTURE.md, "Parallelism": why not a process per GPU).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "dist/group.h"
#include "model/model.h"
#include "runtime/parallel_config.h"

namespace ds::runtime {

struct ReplicaSpec {
  std::string model_path;
  ParallelConfig parallel;       // the layout; ep == tp places whole experts on each rank
  model::ModelOptions model_options;
  // --load-format dummy: random weights of config.json's shapes made in each rank's memory, only its part
  // (model/random_weights.h, seed 0); no safetensors are read.
  bool random_weights = false;
  // This process's ranks: [first_rank, first_rank + ranks) of the world (ranks 0: all of them). A node of
  // a multi-node deployment holds a consecutive share.
  int first_rank = 0, ranks = 0;
  // The backend of rank r (its GPU, or a CPU backend with its share of the cores).
  std::function<std::unique_ptr<backend::Backend>(int rank)> make_backend;
  // Handles of a group over ranks [group_first, group_first + group_size), one per backend of this
  // process's members of it (ranks member_first, member_first + 1, ...; all of them on one node):
  // LocalGroup on the CPU, NCCL on GPUs, Gloo or NCCL across nodes. Called before loading for every group
  // of two or more ranks (DP attention: all ranks, then each DP group's; otherwise each replica's).
  std::function<std::vector<std::unique_ptr<dist::Group>>(const std::vector<backend::Backend*>& members,
                                                          int member_first, int group_first, int group_size)>
      make_groups;
};

// How rank r's model is cut, over which groups (ReplicaSpec::parallel's layout): world[r] is r's handle of
// the group of all ranks (DP attention), local[r] of its replica's or DP group's (null for groups of one).
model::TensorParallel rank_layout(const ParallelConfig& p, int r, const std::vector<dist::Group*>& world,
                                  const std::vector<dist::Group*>& local);

// The process groups of ranks [first, end) of the deployment: every rank's handle of the group of all ranks
// (DP attention's MoE exchange) and of its replica's or DP group's, indexed by r - first (null for groups of
// one). make(member_first, member_end, group_first, group_size) returns the handles of members
// [member_first, member_end) of the group [group_first, group_first + group_size); it is called for every
// group of two or more ranks with a member in [first, end). load_replica makes real groups with it,
// memory-plan local stand-ins of the same sizes.
struct RankGroups {
  std::vector<std::unique_ptr<dist::Group>> owned;
  std::vector<dist::Group*> world, local;
};
using GroupMaker = std::function<std::vector<std::unique_ptr<dist::Group>>(int member_first, int member_end,
                                                                           int group_first, int group_size)>;
RankGroups make_rank_groups(const ParallelConfig& p, int first, int end, const GroupMaker& make);

struct Replica {
  std::vector<std::unique_ptr<dist::Group>> groups;  // first: destroyed last (the models use them)
  std::vector<std::unique_ptr<backend::Backend>> backends;
  std::vector<std::unique_ptr<model::Model>> models;  // rank first_rank + i's on backends[i]
  std::vector<int64_t> free_before;  // each backend's free device memory before the group and weights
  int group_size = 1;                // ranks of one DP group (runner group of the engine): consecutive
  int first_rank = 0;                // of this process's ranks in the world
  int size() const { return int(models.size()); }
};

// Throws ds::Error naming the rank when any rank fails to load (after every rank has stopped).
Replica load_replica(const ReplicaSpec& spec);

}  // namespace ds::runtime
