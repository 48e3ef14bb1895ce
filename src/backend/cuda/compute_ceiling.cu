// measure_compute_ceiling (compute_ceiling.h). The FP8 GEMM writes BF16, as the gpu_bench figure always did
// (the faster output: the higher ceiling).
#include <cstdio>
#include <vector>

#include "backend/cuda/compute_ceiling.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/launch_timer.h"

namespace ds::backend::cuda {

namespace {
// Hashed bytes & mask (BF16 with bounded exponents: 0xbf keeps |x| < 2^1); e4m3 NaN codes (0x7f, 0xff)
// avoided, so the same bytes serve as FP8 operands. Random operands: constant ones draw less power and
// would read a higher, unreachable rate.
__global__ void fill_bytes(uint8_t* p, size_t n, uint8_t mask) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ uint32_t(i >> 32) * 0x85ebca6bu;
    h ^= h >> 15, h *= 0x2c1b3c6du, h ^= h >> 12;
    uint8_t v = uint8_t(h >> 8) & mask;
    if ((v & 0x7f) == 0x7f) v ^= 1;
    p[i] = v;
  }
}
__global__ void fill_f32(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) p[i] = v;
}
}  // namespace

std::string ComputeCeiling::describe() const {
  char line[256];
  std::snprintf(line, sizeof line,
                "tensor-core ceilings: cuBLASLt %dx%dx%d BF16 %.0f TFLOP/s (%.0f%% of the nominal %.0f), FP8 "
                "block-scaled %.0f TFLOP/s (%.0f%% of the nominal %.0f), measured now",
                size, size, size, bf16_tflops, 100 * bf16_tflops / kNominalBf16Tflops, kNominalBf16Tflops, fp8_tflops,
                100 * fp8_tflops / kNominalFp8Tflops, kNominalFp8Tflops);
  return line;
}

ComputeCeiling measure_compute_ceiling(int S) {
  ComputeCeiling c;
  c.size = S;
  DS_CUDA_CHECK(cudaDeviceSynchronize());
  const size_t n2 = size_t(S) * S * 2;
  void *w = nullptr, *x = nullptr, *y = nullptr, *ws = nullptr, *xs = nullptr;
  DS_CUDA_CHECK(cudaMalloc(&w, n2));
  DS_CUDA_CHECK(cudaMalloc(&x, n2));
  DS_CUDA_CHECK(cudaMalloc(&y, size_t(S) * S * 4));
  DS_CUDA_CHECK(cudaMalloc(&ws, size_t(S / 128) * (S / 128) * 4));
  DS_CUDA_CHECK(cudaMalloc(&xs, size_t(S) * (S / 128) * 4));
  cudaStream_t st;
  DS_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  fill_bytes<<<1024, 256, 0, st>>>(static_cast<uint8_t*>(w), n2, 0xbf);
  fill_bytes<<<1024, 256, 0, st>>>(static_cast<uint8_t*>(x), n2, 0xbf);
  fill_f32<<<64, 256, 0, st>>>(static_cast<float*>(ws), size_t(S / 128) * (S / 128), 1e-3f);
  fill_f32<<<256, 256, 0, st>>>(static_cast<float*>(xs), size_t(S) * (S / 128), 1e-3f);
  DS_CUDA_CHECK(cudaGetLastError());
  const double flop = 2.0 * S * S * S;
  {
    LtGemm lt;
    const double t = median_event_ms(st, 2, 10, [&] {
      lt.bf16(static_cast<uint16_t*>(w), static_cast<uint16_t*>(x), static_cast<float*>(y), S, S, S, st);
    });
    c.bf16_tflops = flop / (t * 1e-3) / 1e12;
    bool ok = true;
    const double t8 = median_event_ms(st, 2, 10, [&] {
      ok &= lt.fp8(static_cast<uint8_t*>(w), static_cast<float*>(ws), static_cast<uint8_t*>(x), static_cast<float*>(xs), y,
                   false, S, S, S, st);
    });
    c.fp8_tflops = ok ? flop / (t8 * 1e-3) / 1e12 : 0;
    DS_CUDA_CHECK(cudaStreamSynchronize(st));
  }
  cudaStreamDestroy(st);
  cudaFree(w), cudaFree(x), cudaFree(y), cudaFree(ws), cudaFree(xs);
  return c;
}

}  // namespace ds::backend::cuda
