// Device side of the packed FP8 KV rows (backend/kv_fp8.h): the same numerics as the host functions
// there (scale amax / 448 or ue8m0; e4m3 by round to nearest even with saturation; value =
// bf16(code x scale)), so the GPU's pools and reads equal the CPU backend's bit for bit.
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

// Fast exact dequantisation for power-of-two scales (both layouts), without fp32 conversions:
// kv_pow2_mul2(scale) is the bf16x2 multiplier 2^(112 + log2 scale), or 0 where the fast form does not apply
// (a scale that is not a power of two, or outside 2^-117 .. 2^15: then kv_value is the way).
__device__ __forceinline__ uint32_t kv_pow2_mul2(float scale) {
  const uint32_t b = __float_as_uint(scale), f = b >> 23;  // sign + exponent field
  if ((b & 0x7fffffu) != 0 || f < 10 || f > 142) return 0;
  const uint32_t m = (f + 112) << 7;  // bf16 bits of 2^(f - 127 + 112)
  return m | (m << 16);
}
// Two codes (byte 0 = first channel) -> bf16x2 bits of code x scale, given mul2 = kv_pow2_mul2(scale) != 0.
// e4m3x2 -> f16x2 in hardware (exact; every nonzero e4m3 value is a normal f16); the f16 bits shifted right
// by 3 are the bf16 bits of value x 2^-112 (e4m3's 3 mantissa bits survive the shift, the exponent field
// lands in bf16's); one bf16x2 multiply by the power of two is exact and keeps the sign of a zero. Equal to
// kv_value(code, scale) for each channel.
__device__ __forceinline__ uint32_t kv_bf16x2_pow2(uint32_t two_codes, uint32_t mul2) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(two_codes & 0xffffu), __NV_E4M3);
  const uint32_t u = uint32_t(h.x) | (uint32_t(h.y) << 16);
  // (each half's 3 low bits are cleared first: zero for e4m3 values, but an e4m3 NaN's f16 NaN would
  // otherwise shift them into the other channel)
  const uint32_t v = ((u & 0x7ff87ff8u) >> 3) | (u & 0x80008000u);
  const __nv_bfloat162 r = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&v),
                                   *reinterpret_cast<const __nv_bfloat162*>(&mul2));
  return *reinterpret_cast<const uint32_t*>(&r);
}
// Eight codes (byte i of the pair = channel i) -> eight bf16 values of code x scale, for any scale: the
// fast form where kv_pow2_mul2 allows, else kv_value per channel (a bf16 value either way).
__device__ __forceinline__ uint4 kv_bf16x8(uint32_t c0, uint32_t c1, float scale) {
  const uint32_t m = kv_pow2_mul2(scale);
  if (m != 0)
    return make_uint4(kv_bf16x2_pow2(c0, m), kv_bf16x2_pow2(c0 >> 16, m), kv_bf16x2_pow2(c1, m),
                      kv_bf16x2_pow2(c1 >> 16, m));
  uint32_t w[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const uint32_t word = e < 2 ? c0 : c1, sh = 16 * (e & 1);
    const float v0 = kv_value(uint8_t(word >> sh), scale), v1 = kv_value(uint8_t(word >> (sh + 8)), scale);
    w[e] = (__float_as_uint(v0) >> 16) | (__float_as_uint(v1) & 0xffff0000u);  // exact: bf16 values
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
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
