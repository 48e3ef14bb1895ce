// The custom all-reduce's checks (dist/peer_all_reduce.h), run by gpu_dist_check.
#pragma once
#include <string>

namespace peercheck {

using Expect = void (*)(bool ok, const std::string& what);

// 2, 4 and 8 ranks on GPU 0 (PeerAllReduce directly: NCCL refuses two ranks on one GPU): bitwise sums,
// 300 back-to-back calls, CUDA graphs, abort and timeout, and a kernel-overhead timing line.
void peer_all_reduce_one_gpu(Expect expect);
// Through NcclGroup over GPUs 0..gpus-1 (gpus >= 2, at most 8 used): bitwise sums, the latency next to
// NCCL's, and abort / timeout ending in GroupAborted.
void peer_all_reduce_groups(int gpus, Expect expect);

}  // namespace peercheck
