// gpu_bench's shared state and helpers (gpu_bench.cpp, gpu_bench_attention.cpp, gpu_bench_moe.cpp): the
// backend, the xorshift generator every bench draws from (one state, so each bench's inputs do not depend on
// which file holds it), event timing on the backend's stream, random device buffers, the measured ceilings.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch_timer.h"
#include "check_util.h"

namespace ds::gpubench {

inline backend::cuda::CudaBackend* be = nullptr;

inline uint64_t xs_state = 0x9E3779B97F4A7C15ull;
inline uint64_t xorshift() {
  xs_state ^= xs_state << 13;
  xs_state ^= xs_state >> 7;
  xs_state ^= xs_state << 17;
  return xs_state;
}

// Median milliseconds of fn(i) over `reps` runs after `warm` runs (events on the backend's stream; i counts
// the runs, warm-up included).
inline double time_ms(const std::function<void(int)>& fn, int reps = 20, int warm = 3) {
  int i = 0;
  return backend::cuda::median_event_ms(be->stream(), warm, reps, [&] { fn(i++); });
}

// A device buffer of random bytes (random host block, tiled on the device).
inline void fill_random(void* dev, size_t bytes, uint8_t mask = 0xff, uint8_t avoid_nan_fp8 = 1) {
  const size_t blk = std::min<size_t>(bytes, size_t(16) << 20);
  std::vector<uint8_t> h(blk);
  for (auto& v : h) {
    v = uint8_t(xorshift() >> 24) & mask;
    if (avoid_nan_fp8 && (v & 0x7f) == 0x7f) v ^= 1;  // 0x7f / 0xff are e4m3 NaN
  }
  // On the backend's stream (a legacy-stream cudaMemcpy would not be ordered with its kernels).
  DS_CUDA_CHECK(cudaMemcpyAsync(dev, h.data(), blk, cudaMemcpyHostToDevice, be->stream()));
  for (size_t off = blk; off < bytes; off += blk)
    DS_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dev) + off, dev, std::min(blk, bytes - off), cudaMemcpyDeviceToDevice,
                                  be->stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
}

inline Tensor rand_f32(std::vector<int64_t> shape, float scale = 1.0f) {
  Tensor h = gpucheck::randn(shape, scale);
  return be->from_host(h);
}

// Normal random values, a block of at most 4M generated on the host and tiled over the tensor on the
// device (large pools: host generation would dominate the run; repeats every 16 MB do not matter here).
inline Tensor rand_f32_tiled(std::vector<int64_t> shape, float scale = 1.0f) {
  Tensor t = be->empty(shape, DType::F32);
  const int64_t n = t.numel(), blk = std::min<int64_t>(n, int64_t(4) << 20);
  Tensor h = gpucheck::randn({blk}, scale);
  DS_CUDA_CHECK(cudaMemcpyAsync(t.raw(), h.f32(), size_t(blk) * 4, cudaMemcpyHostToDevice, be->stream()));
  for (int64_t off = blk; off < n; off += blk)
    DS_CUDA_CHECK(cudaMemcpyAsync(t.data<float>() + off, t.raw(), size_t(std::min(blk, n - off)) * 4,
                                  cudaMemcpyDeviceToDevice, be->stream()));
  DS_CUDA_CHECK(cudaStreamSynchronize(be->stream()));
  return t;
}

struct Ceilings {
  double hbm_gbs = 0, bf16_tflops = 0, fp8_tflops = 0;  // hbm_gbs: hbm_ceiling.h
};

}  // namespace ds::gpubench
