// Work a process must do once per GPU rather than once: CUDA applies kernel attributes (the large
// dynamic shared memory opt-in) to the current device only, and one process may drive several GPUs
// (one runner per device, each on its own thread).
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace ds::backend::cuda {

// The calling thread's current device, as an index into per-device tables of up to 64 entries.
inline int current_device_slot() {
  int dev = 0;
  cudaGetDevice(&dev);
  return dev & 63;
}

// Runs `f` unless it already ran for the calling thread's current device (up to 64 devices). Two threads
// on the same device may both run it: setting an attribute twice is harmless.
template <class F>
void once_per_device(std::atomic<uint64_t>& done, F&& f) {
  const uint64_t bit = uint64_t(1) << current_device_slot();
  if (done.load(std::memory_order_acquire) & bit) return;
  f();
  done.fetch_or(bit, std::memory_order_release);
}

}  // namespace ds::backend::cuda
