// gpu_ops_check: the fast FP8 KV dequantisation (kv_bf16x8, backend/cuda/kv_fp8.cuh, exponent arithmetic
// for power-of-two scales) against the plain one (kv_value: bf16(code x scale) through fp32) for every
// e4m3 code in every position of the 8-code group, over powers of two across and past the fast form's range
// (2^-117 .. 2^15), scales that are not powers of two, and zero. Bitwise, signs of zeros included.
#include "gpu_ops_check_kv_dequant.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kv_fp8.cuh"

namespace opcheck {
namespace {
using ds::backend::cuda::kv_bf16x8;
using ds::backend::cuda::kv_value;

// Thread i: codes i (low 16 bits of both words, high 16 bits rotated) under scale s; counts mismatches
// and keeps the first 8 (scale index, code, wanted bits, got bits) in ex.
__global__ void dequant_kernel(const float* scales, int n_scales, unsigned long long* bad, uint32_t* ex) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= 65536u) return;
  const uint32_t c0 = i | (((i * 40503u) & 0xffffu) << 16), c1 = (i ^ 0xa5a5u) | (((i + 12345u) & 0xffffu) << 16);
  for (int k = 0; k < n_scales; ++k) {
    const float s = scales[k];
    const uint4 got = kv_bf16x8(c0, c1, s);
    const uint32_t words[4] = {got.x, got.y, got.z, got.w};
    for (int e = 0; e < 8; ++e) {
      const uint8_t code = uint8_t((e < 4 ? c0 : c1) >> (8 * (e & 3)));
      if ((code & 0x7f) == 0x7f) continue;  // e4m3 NaN: never written
      const uint32_t want = __float_as_uint(kv_value(code, s)) >> 16;
      const uint32_t have = (words[e / 2] >> (16 * (e & 1))) & 0xffffu;
      if (want != have) {
        const unsigned long long n = atomicAdd(bad, 1ull);
        if (n < 8) ex[4 * n] = k, ex[4 * n + 1] = code, ex[4 * n + 2] = want, ex[4 * n + 3] = have;
      }
    }
  }
}
}  // namespace

long long kv_dequant_mismatches(int* n_scales_out) {
  std::vector<float> s;
  for (int e = -140; e <= 40; ++e) s.push_back(std::ldexp(1.0f, e));  // incl. fp32 subnormal scales
  for (float v : {0.0f, 1e-4f / 448.0f, 0.3f / 448.0f, 1.7f / 448.0f, 3.14159f, 123.456f / 448.0f, 6e-38f}) s.push_back(v);
  float* ds = nullptr;
  unsigned long long* bad = nullptr;
  uint32_t* ex = nullptr;
  DS_CUDA_CHECK(cudaMalloc(&ds, s.size() * sizeof(float)));
  DS_CUDA_CHECK(cudaMalloc(&bad, sizeof(unsigned long long)));
  DS_CUDA_CHECK(cudaMalloc(&ex, 32 * sizeof(uint32_t)));
  DS_CUDA_CHECK(cudaMemcpy(ds, s.data(), s.size() * sizeof(float), cudaMemcpyHostToDevice));
  DS_CUDA_CHECK(cudaMemset(bad, 0, sizeof(unsigned long long)));
  dequant_kernel<<<65536 / 256, 256>>>(ds, int(s.size()), bad, ex);
  DS_CUDA_CHECK(cudaGetLastError());
  unsigned long long h = 0;
  uint32_t e[32];
  DS_CUDA_CHECK(cudaMemcpy(&h, bad, sizeof(h), cudaMemcpyDeviceToHost));
  DS_CUDA_CHECK(cudaMemcpy(e, ex, sizeof(e), cudaMemcpyDeviceToHost));
  for (unsigned long long i = 0; i < h && i < 8; ++i)
    std::printf("kv_bf16x8 mismatch: scale %g, code 0x%02x: want bf16 0x%04x, got 0x%04x\n", double(s[e[4 * i]]),
                e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]);
  cudaFree(ds);
  cudaFree(bad);
  cudaFree(ex);
  *n_scales_out = int(s.size());
  return (long long)h;
}

}  // namespace opcheck
