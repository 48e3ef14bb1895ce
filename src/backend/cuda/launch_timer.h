// Event timing on a stream. LaunchTimer (benchmarks, CudaBackend::set_profile): events recorded between a
// fixed sequence of launches, the intervals read once the last one has passed; off, it creates no events and
// never synchronises. median_event_ms: one piece of work timed alone, repeated (the HBM ceiling, gpu_bench).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_check.h"

namespace ds::backend::cuda {

// The median milliseconds of fn() (work queued on `st`) over `reps` runs after `warm` untimed ones, each
// between two events and waited for.
template <class F>
double median_event_ms(cudaStream_t st, int warm, int reps, const F& fn) {
  cudaEvent_t a, b;
  DS_CUDA_CHECK(cudaEventCreate(&a));
  DS_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < warm + reps; ++i) {
    DS_CUDA_CHECK(cudaEventRecord(a, st));
    fn();
    DS_CUDA_CHECK(cudaEventRecord(b, st));
    DS_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    DS_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    if (i >= warm) ms.push_back(t);
  }
  DS_CUDA_CHECK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return double(ms[ms.size() / 2]);
}

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
