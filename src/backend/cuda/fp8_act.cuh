// The fast GEMM mode's FP8 activation rounding, shared by the kernels that quantise activations
// (k_quant.cu for linear(), k_moe_fp8.cu's SwiGLU epilogue): one power-of-two (ue8m0) scale per token per
// 128 columns, the smallest 2^e with amax / 2^e <= 448, amax clamped to >= 1e-4, as DeepSeek's kernels
// compute it; e4m3 by round to nearest even with saturation. One definition, so both paths round alike.
#pragma once
#include <cuda_fp8.h>

#include <cstdint>

namespace ds::backend::cuda {

__device__ __forceinline__ float ue8m0_scale(float amax) {
  int e;
  const float m = frexpf(fmaxf(amax, 1e-4f) / 448.0f, &e);
  return ldexpf(1.0f, m == 0.5f ? e - 1 : e);
}

__device__ __forceinline__ uint8_t to_e4m3(float v) {
  return uint8_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));  // round to nearest even
}

__device__ __forceinline__ float from_e4m3(uint8_t b) {
  __nv_fp8_e4m3 q;
  q.__x = b;
  return float(q);
}

}  // namespace ds::backend::cuda
