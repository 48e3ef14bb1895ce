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

struct NcclGroupOptions {
  // Small F32/BF16 all-reduces through the one-shot kernel over peer memory (dist/peer_all_reduce.h) where
  // every two GPUs reach each other's memory; false: NCCL for all (--disable-custom-all-reduce).
  bool custom_all_reduce = true;
  // Its size limit. 0 by default: off until its checks pass on one GPU (their first run failed; docs/PERF.md,
  // session 20) and across GPUs (issue 15). DSSERVE_CUSTOM_AR_MAX_BYTES (up to 512 KiB) overrides it.
  size_t custom_all_reduce_max_bytes = 0;
  double custom_all_reduce_timeout_s = 60;  // a rank that waited this long for a peer ends the group (a backstop: ranks step together)
};

// One group handle per backend (each a CUDA backend on its own GPU), rank r = backends[r]. Throws
// ds::Error naming NCCL's message when the communicators cannot be made (e.g. two ranks on one GPU).
// Logs which all-reduce the group uses.
std::vector<std::unique_ptr<Group>> make_nccl_groups(const std::vector<backend::Backend*>& backends,
                                                     const NcclGroupOptions& o = {});

// Across nodes: a new group id (node 0 makes it and hands it to every node through the rendezvous), and
// this node's ranks first_rank .. first_rank + local.size() - 1 of a group of `size` joined with it.
// NCCL for every collective (the custom all-reduce needs all ranks in this process).
std::string nccl_unique_id();
std::vector<std::unique_ptr<Group>> make_nccl_groups_across(const std::vector<backend::Backend*>& local,
                                                             int first_rank, int size, const std::string& unique_id);

}  // namespace ds::dist
