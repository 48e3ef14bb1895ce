// measure_hbm_ceiling (hbm_ceiling.h).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/hbm_ceiling.h"
#include "backend/cuda/launch_timer.h"

namespace ds::backend::cuda {

namespace {
__global__ void fill_pattern(uint4* p, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t h = uint32_t(i) * 2654435761u + 0x9E3779B9u;
    p[i] = make_uint4(h, h ^ 0x55555555u, h + 1, ~h);
  }
}

__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// Every thread keeps U 16-byte loads in flight; the XOR of all words goes to `sink` only when it is a
// value no pattern gives, so nothing is optimised away and nothing is written.
template <int U>
__global__ void __launch_bounds__(512) read_stream(const uint4* __restrict__ p, size_t n, uint32_t* sink) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  for (; i + (U - 1) * stride < n; i += U * stride) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = ld_stream(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < U; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) {
    const uint4 v = ld_stream(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x7fc00001u) *sink = acc;
}

}  // namespace

std::string HbmCeiling::describe() const {
  char line[256];
  std::snprintf(line, sizeof line,
                "HBM ceiling %.0f GB/s = best of a device-to-device copy %.0f GB/s (read + write) and a read-only "
                "kernel %.0f GB/s, over %lld MiB",
                best_gbs(), copy_gbs, read_gbs, static_cast<long long>(bytes >> 20));
  return line;
}

HbmCeiling measure_hbm_ceiling(int64_t bytes) {
  HbmCeiling c;
  DS_CUDA_CHECK(cudaDeviceSynchronize());
  void* buf = nullptr;
  bytes = std::max<int64_t>(bytes, int64_t(256) << 20) / 512 * 512;
  while (cudaMalloc(&buf, size_t(bytes)) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the allocation failure
    DS_CHECK(bytes > (int64_t(256) << 20), "HBM ceiling: not even 256 MiB of device memory free");
    bytes /= 2;
  }
  uint32_t* sink = nullptr;
  DS_CUDA_CHECK(cudaMalloc(&sink, 4));
  cudaStream_t st;
  DS_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  int dev = 0, sms = 0;
  DS_CUDA_CHECK(cudaGetDevice(&dev));
  DS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const size_t n = size_t(bytes) / 16;
  fill_pattern<<<sms * 8, 256, 0, st>>>(static_cast<uint4*>(buf), n);
  DS_CUDA_CHECK(cudaGetLastError());
  const size_t half = size_t(bytes) / 2;
  char* p = static_cast<char*>(buf);
  const double copy_ms = median_event_ms(st, 2, 10, [&] {
    DS_CUDA_CHECK(cudaMemcpyAsync(p + half, p, half, cudaMemcpyDeviceToDevice, st));
  });
  c.copy_gbs = 2.0 * double(half) / (copy_ms * 1e-3) / 1e9;
  // Two depths of loads in flight; the better one counts (4 blocks of 512 threads fill an SM).
  const double r4 = median_event_ms(st, 2, 10, [&] { read_stream<4><<<sms * 4, 512, 0, st>>>(static_cast<const uint4*>(buf), n, sink); });
  const double r8 = median_event_ms(st, 2, 10, [&] { read_stream<8><<<sms * 4, 512, 0, st>>>(static_cast<const uint4*>(buf), n, sink); });
  c.read_gbs = double(bytes) / (std::min(r4, r8) * 1e-3) / 1e9;
  c.bytes = bytes;
  DS_CUDA_CHECK(cudaStreamSynchronize(st));
  cudaStreamDestroy(st);
  cudaFree(sink);
  cudaFree(buf);
  return c;
}

}  // namespace ds::backend::cuda
