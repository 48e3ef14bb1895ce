// NcclGroup: tensor-parallel ranks on GPUs of this process, one NCCL communicator per rank, every
// collective enqueued on the rank's CUDA stream (so it is ordered with the step's kernels and is
// recorded into CUDA graphs like them). Built only with CUDA.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "dist/group.h"

namespace ds::dist {

// One group handle per backend (each a CUDA backend on its own GPU), rank r = backends[r]. Throws
// ds::Error naming NCCL's message when the communicators cannot be made (e.g. two ranks on one GPU).
std::vector<std::unique_ptr<Group>> make_nccl_groups(const std::vector<backend::Backend*>& backends);

// Across nodes: a new group id (node 0 makes it and hands it to every node through the rendezvous), and
// this node's ranks first_rank .. first_rank + local.size() - 1 of a group of `size` joined with it.
std::string nccl_unique_id();
std::vector<std::unique_ptr<Group>> make_nccl_groups_across(const std::vector<backend::Backend*>& local,
                                                             int first_rank, int size, const std::string& unique_id);

}  // namespace ds::dist
