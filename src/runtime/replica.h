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
  // The backend of rank r (its GPU, or a CPU backend with its share of the cores).
  std::function<std::unique_ptr<backend::Backend>(int rank)> make_backend;
  // A group over some ranks' backends (LocalGroup on the CPU, NCCL on GPUs), one handle per backend in
  // order; called before loading for every group of two or more ranks (DP attention: all ranks, then
  // each DP group's; otherwise each replica's).
  std::function<std::vector<std::unique_ptr<dist::Group>>(const std::vector<backend::Backend*>&)> make_groups;
};

struct Replica {
  std::vector<std::unique_ptr<dist::Group>> groups;  // first: destroyed last (the models use them)
  std::vector<std::unique_ptr<backend::Backend>> backends;
  std::vector<std::unique_ptr<model::Model>> models;  // rank r's on backends[r]
  std::vector<int64_t> free_before;  // each backend's free device memory before the group and weights
  int group_size = 1;                // ranks of one DP group (runner group of the engine): consecutive
  int size() const { return int(models.size()); }
};

// Throws ds::Error naming the rank when any rank fails to load (after every rank has stopped).
Replica load_replica(const ReplicaSpec& spec);

}  // namespace ds::runtime
