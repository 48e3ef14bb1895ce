// Device side of the packed FP8 KV rows (backend/kv_fp8.h): the same numerics as the host functions
// there, operation for operation (scale amax / 448 or ue8m0; e4m3 by round to nearest even with
// saturation; value = bf16(code x scale)), so the GPU's pools and reads equal the CPU backend's bit for bit.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace ds::backend::cuda {

__device__ __forceinline__ int kv_tiles(const KvFp8Dev& L) { return (L.quant_dim + L.tile - 1) / L.tile; }
__device__ __forceinline__ int kv_bf16_off(const KvFp8Dev& L) { return L.quant_dim + 4 * kv_tiles(L); }

__device__ __forceinline__ float kv_scale(float amax, bool pow2) {
  if (!pow2) return amax / 448.0f;
  int e;
  const float m = frexpf(fmaxf(amax, 1e-4f) / 448.0f, &e);
  return ldexpf(1.0f, m == 0.5f ? e - 1 : e);
}

__device__ __forceinline__ uint8_t kv_to_e4m3(float v) {
  return uint8_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

// bf16(code x scale) as fp32, and as bf16 bits.
__device__ __forceinline__ float kv_value(uint8_t code, float scale) {
  __nv_fp8_e4m3 q;
  q.__x = code;
  return __bfloat162float(__float2bfloat16_rn(float(q) * scale));
}
// Four codes packed in a word (byte i = channel i) -> their values.
__device__ __forceinline__ float4 kv_value4(uint32_t codes, float scale) {
  return make_float4(kv_value(uint8_t(codes), scale), kv_value(uint8_t(codes >> 8), scale),
                     kv_value(uint8_t(codes >> 16), scale), kv_value(uint8_t(codes >> 24), scale));
}

// Channels c .. c + 3 (c % 4 == 0, within one tile or within the bf16 part) of a packed row, as fp32.
// Rows are 4-byte aligned (quant_dim % 4 == 0, bf16_dim % 2 == 0).
__device__ __forceinline__ float4 kv_load4(const uint8_t* row, const KvFp8Dev& L, int c) {
  if (c < L.quant_dim) {
    const float s = *reinterpret_cast<const float*>(row + L.quant_dim + 4 * (c / L.tile));
    return kv_value4(*reinterpret_cast<const uint32_t*>(row + c), s);
  }
  const uint32_t* b = reinterpret_cast<const uint32_t*>(row + kv_bf16_off(L) + 2 * (c - L.quant_dim));
  const uint32_t u0 = b[0], u1 = b[1];
  return make_float4(__uint_as_float(u0 << 16), __uint_as_float(u0 & 0xffff0000u), __uint_as_float(u1 << 16),
                     __uint_as_float(u1 & 0xffff0000u));
}

}  // namespace ds::backend::cuda
