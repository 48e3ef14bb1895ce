// Device memory of the CUDA backend: a caching allocator for activations, workspaces and KV pools
// (blocks return to per-size free lists instead of cudaFree, so steady-state steps never call cudaMalloc),
// and plain cudaMalloc for weights (allocated once at load). Work runs in one stream's order, so a block
// freed on the host may be handed out again at once: its next user's kernels run after its last
// user's. While a branch runs on a second stream (CudaBackend::branch) that order does not hold between
// the two: blocks freed then are held back until the branch is joined (hold_frees).
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "tensor/tensor.h"

namespace ds::backend::cuda {

class DeviceAllocator : public std::enable_shared_from_this<DeviceAllocator> {
 public:
  DeviceAllocator() = default;
  ~DeviceAllocator();
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;

  // A storage of at least `bytes` (256-byte aligned) that returns to the cache when the last tensor
  // using it goes away.
  std::shared_ptr<Storage> allocate(size_t bytes);
  // Returns every cached (free) block to the driver.
  void empty_cache();
  // On: blocks released from now on wait in a list of their own; off: they join the free lists.
  void hold_frees(bool on);

  struct Stats {
    size_t in_use = 0, cached = 0, peak_in_use = 0, cuda_mallocs = 0;
  };
  Stats stats() const;

 private:
  void release(void* p, size_t rounded);
  static size_t round_size(size_t bytes);

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::vector<std::pair<void*, size_t>> held_;  // released while hold_frees (block, rounded size)
  bool holding_ = false;
  Stats st_;
};

// A weight or other long-lived buffer: plain cudaMalloc, cudaFree when the last tensor goes away.
std::shared_ptr<Storage> persistent_alloc(size_t bytes);

}  // namespace ds::backend::cuda
