// Benchmarks (CudaBackend::set_profile): events recorded on a stream between a fixed sequence of launches,
// the intervals read once the last one has passed. Off, it creates no events and never synchronises.
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda/cuda_check.h"

namespace ds::backend::cuda {

class LaunchTimer {
 public:
  // `marks` events at most, so marks - 1 intervals.
  LaunchTimer(bool on, cudaStream_t stream, int marks) : stream_(stream) {
    if (!on) return;
    ev_.resize(size_t(marks));
    for (auto& e : ev_) DS_CUDA_CHECK(cudaEventCreate(&e));
  }
  ~LaunchTimer() {
    for (auto& e : ev_) cudaEventDestroy(e);
  }
  LaunchTimer(const LaunchTimer&) = delete;
  LaunchTimer& operator=(const LaunchTimer&) = delete;

  bool on() const { return !ev_.empty(); }
  // Records the next event after the work queued so far.
  void mark() {
    if (on() && next_ < ev_.size()) DS_CUDA_CHECK(cudaEventRecord(ev_[next_++], stream_));
  }
  // Waits for the last mark; the time between consecutive marks in microseconds (empty when off).
  std::vector<float> intervals_us() {
    std::vector<float> us;
    if (next_ < 2) return us;
    DS_CUDA_CHECK(cudaEventSynchronize(ev_[next_ - 1]));
    for (size_t i = 0; i + 1 < next_; ++i) {
      float ms = 0;
      DS_CUDA_CHECK(cudaEventElapsedTime(&ms, ev_[i], ev_[i + 1]));
      us.push_back(ms * 1e3f);
    }
    return us;
  }

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> ev_;
  size_t next_ = 0;
};

}  // namespace ds::backend::cuda
