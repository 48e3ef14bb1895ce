// PeerAllReduce: the one-shot all-reduce over peer memory (backend/cuda/k_peer_all_reduce.cu) between the
// CUDA ranks of this process. NcclGroup sends small F32/BF16 all-reduces here instead of to NCCL: a decode
// step's 2 per layer are ~29 KB each at batch 1, where NCCL's latency (~10-20 us) is most of their cost.
// Built only with CUDA.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/peer_all_reduce_kernel.h"
#include "tensor/tensor.h"

namespace ds::backend::cuda {
class CudaBackend;
}

namespace ds::dist {

struct PeerAllReduceOptions {
  size_t max_bytes = backend::cuda::kPeerMaxBytes;  // larger messages go to NCCL
  // A kernel that waited this long for a peer gives up and ends every rank's waits; the ranks' next
  // collective throws GroupAborted naming the peer.
  double timeout_s = 60;
};

class PeerAllReduce {
 public:
  // Staging buffers and flags on each rank's device (rank r = ranks[r]; several ranks may share a device)
  // and peer access between every two of their devices. nullptr, with the reason in *why, when two of the
  // devices cannot reach each other's memory or there are more ranks than the kernel takes.
  static std::unique_ptr<PeerAllReduce> make(const std::vector<backend::cuda::CudaBackend*>& ranks,
                                             const PeerAllReduceOptions& o, std::string* why);
  ~PeerAllReduce();
  PeerAllReduce(const PeerAllReduce&) = delete;
  PeerAllReduce& operator=(const PeerAllReduce&) = delete;

  size_t max_bytes() const { return max_bytes_; }
  // Whether t's all-reduce runs here: from its dtype and size only, so every rank answers alike.
  bool fits(const Tensor& t) const;
  // Rank `rank`'s part of the all-reduce of t, in place, on its stream (capturable into a CUDA graph).
  void run(Tensor& t, int rank, cudaStream_t st) const;
  // Every rank's waiting and later kernels return at once (leaving their tensors as they were).
  void abort();
  // Empty while no kernel gave up waiting; else which rank waited in vain for which.
  std::string failure() const;

 private:
  PeerAllReduce() = default;
  struct RankBuffers {
    int device = 0;
    void* data = nullptr;
    uint32_t* flags = nullptr;
    uint32_t* epochs = nullptr;
  };
  std::vector<RankBuffers> ranks_;
  std::vector<backend::cuda::PeerArgs> args_;
  uint32_t* host_words_ = nullptr;  // host-mapped: [0] abort, [1 + r] rank r's error (missing peer + 1)
  size_t max_bytes_ = 0;
  double timeout_s_ = 0;
};

}  // namespace ds::dist
