// The one-shot all-reduce kernel over peer memory (k_peer_all_reduce.cu) and the buffers it works on;
// dist/peer_all_reduce.h sets them up and decides when to use it.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace ds::backend::cuda {

constexpr int kPeerMaxRanks = 8;
constexpr int kPeerMaxBlocks = 32;
constexpr int kPeerThreads = 512;
// Block b always owns bytes [b * kPeerChunkBytes, (b + 1) * kPeerChunkBytes) of the message, whatever
// its dtype and size: the two-parity argument in k_peer_all_reduce.cu rests on it.
constexpr size_t kPeerChunkBytes = size_t(16) << 10;
constexpr size_t kPeerMaxBytes = kPeerMaxBlocks * kPeerChunkBytes;

// Device pointers for one rank's launches (passed by value, so a captured graph keeps them).
struct PeerArgs {
  void* data[kPeerMaxRanks];       // rank r's staging buffer: 2 x kPeerMaxBytes (parity halves)
  uint32_t* flags[kPeerMaxRanks];  // rank r's [kPeerMaxBlocks][kPeerMaxRanks]: flags[b][q] = q's last epoch of b
  uint32_t* epochs;                // this rank's [kPeerMaxBlocks]: runs of block b so far
  uint32_t* abort;                 // host-mapped, shared by all ranks: nonzero ends every wait
  uint32_t* error;                 // host-mapped, this rank's: missing peer + 1 after a timeout
  unsigned long long timeout_ns;
  int rank, ranks;
};

// data (this rank's tensor, F32 or BF16, any 2-byte alignment) = the sum over ranks, in place, the same
// bits on every rank. bytes <= kPeerMaxBytes. Plain stream order (no programmatic dependent launch).
void launch_one_shot_all_reduce(void* data, size_t bytes, bool bf16, const PeerArgs& a, cudaStream_t st);
// Loads both kernel instances into the current device's context now. Under CUDA's lazy module loading
// (the default) a kernel's first launch may synchronise the context; where ranks share a context (one
// GPU), that launch would wait for a peer's kernel that spins waiting for it.
void preload_one_shot_all_reduce();

}  // namespace ds::backend::cuda
