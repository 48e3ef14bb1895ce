// LocalGroup: ranks that are threads of this process, on host memory (the CPU backend). A collective
// is a rendezvous of the threads: each rank publishes its buffer, rank r reduces chunk r over all
// ranks in rank order (so every element is summed once, in one fixed order: the same bits on every
// rank), and all copy the result. No transport is needed since the ranks share an address space;
// NCCL does the same job between GPUs (dist/nccl_group.h).
#pragma once
#include <memory>
#include <vector>

#include "dist/group.h"

namespace ds::dist {

class LocalWorld;

// `size` group handles, one per rank, sharing one rendezvous. Hand handle r to rank r's thread.
std::vector<std::unique_ptr<Group>> make_local_groups(int size);

}  // namespace ds::dist
