// One model replica over its tensor-parallel ranks (issue 14): a backend per rank, the process group
// whose collectives join them, and each rank's part of the model, loaded at once on one thread per
// rank (each reads only its slices of the mmapped checkpoint). Ranks are threads of this process, one
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
  ParallelConfig parallel;       // tp ranks; ep == tp places whole experts on each rank
  model::ModelOptions model_options;
  // The backend of rank r (its GPU, or a CPU backend with its share of the cores).
  std::function<std::unique_ptr<backend::Backend>(int rank)> make_backend;
  // The group over the ranks' backends (LocalGroup on the CPU, NCCL on GPUs); called once, before
  // loading, only when there is more than one rank.
  std::function<std::vector<std::unique_ptr<dist::Group>>(const std::vector<backend::Backend*>&)> make_groups;
};

struct Replica {
  std::vector<std::unique_ptr<dist::Group>> groups;  // first: destroyed last (the models use them)
  std::vector<std::unique_ptr<backend::Backend>> backends;
  std::vector<std::unique_ptr<model::Model>> models;  // rank r's on backends[r]
  std::vector<int64_t> free_before;  // each backend's free device memory before the group and weights
  int size() const { return int(models.size()); }
};

// Throws ds::Error naming the rank when any rank fails to load (after every rank has stopped).
Replica load_replica(const ReplicaSpec& spec);

}  // namespace ds::runtime
