// Device helpers shared by the weight-streaming tensor-core kernels (k_gemv.cu, k_moe_gemm.cu):
// TF32 conversion, the m16n8k8 TF32 MMA (and the m16n8k16 f16 one of the fast decode MoE), 16 consecutive
// FP8 / BF16 weights of a row as floats (or FP8 pairs as f16), and 16 consecutive fp32 activations.
// Both weight formats are exact in TF32 (3 / 7 mantissa bits <= 10).
#pragma once
#include <cuda_fp8.h>

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace ds::backend::cuda {

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// m16n8k16 with f16 operands, fp32 accumulation (products of two f16 are exact in fp32).
__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// xv[0..16) = x[0..16) (four 16-byte loads through the read-only cache) when ok, else zeros.
__device__ __forceinline__ void load_act16(const float* x, bool ok, float (&xv)[16]) {
  if (ok) {
    const float4* xr = reinterpret_cast<const float4*>(x);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float4 v = __ldg(xr + q);
      xv[4 * q] = v.x, xv[4 * q + 1] = v.y, xv[4 * q + 2] = v.z, xv[4 * q + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) xv[i] = 0.f;
  }
}

// 16 consecutive weights of one row as floats: FP8 one 16-byte load, BF16 two.
template <int WT>
struct Row16 {
  static constexpr int loads = WT == int(WType::FP8) ? 1 : 2;
  uint4 v[loads];
  __device__ __forceinline__ void load(const uint8_t* row, int k, bool ok) {
#pragma unroll
    for (int i = 0; i < loads; ++i)
      v[i] = ok ? __ldg(reinterpret_cast<const uint4*>(row + size_t(k) * (WT == int(WType::FP8) ? 1 : 2)) + i)
                : make_uint4(0, 0, 0, 0);
  }
  // The same, for weights read once (the GEMV): no L1 allocation (it keeps the activations), and L2
  // fetches 256 bytes of the row at once (the warp's next steps of it).
  __device__ __forceinline__ void load_stream(const uint8_t* row, int k, bool ok) {
#pragma unroll
    for (int i = 0; i < loads; ++i) {
      if (ok) {
        const uint4* p = reinterpret_cast<const uint4*>(row + size_t(k) * (WT == int(WType::FP8) ? 1 : 2)) + i;
        asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                     : "=r"(v[i].x), "=r"(v[i].y), "=r"(v[i].z), "=r"(v[i].w) : "l"(p));
      } else {
        v[i] = make_uint4(0, 0, 0, 0);
      }
    }
  }
  // Weights 2i and 2i + 1 (i < 8, a compile-time constant after unrolling).
  __device__ __forceinline__ float2 pair(int i) const {
    if constexpr (WT == int(WType::FP8)) {
      __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(reinterpret_cast<const __nv_fp8x2_storage_t*>(&v[0])[i], __NV_E4M3);
      return __half22float2(*reinterpret_cast<__half2*>(&h));
    } else {
      const uint32_t u = reinterpret_cast<const uint32_t*>(v)[i];
      return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xffff0000u));
    }
  }
  // FP8 only: weights 2i and 2i + 1 as an f16 pair (the lower half the lower k), exact, one conversion.
  __device__ __forceinline__ uint32_t half2_bits(int i) const {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(reinterpret_cast<const __nv_fp8x2_storage_t*>(&v[0])[i], __NV_E4M3);
    return uint32_t(h.x) | (uint32_t(h.y) << 16);
  }
  __device__ __forceinline__ void decode(float* f) const {
    if constexpr (WT == int(WType::FP8)) {
      const __nv_fp8x2_storage_t* b = reinterpret_cast<const __nv_fp8x2_storage_t*>(&v[0]);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(b[i], __NV_E4M3);  // exact: e4m3 is a subset of f16
        const float2 x = __half22float2(*reinterpret_cast<__half2*>(&h));
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
      }
    } else {
#pragma unroll
      for (int l = 0; l < 2; ++l) {
        const uint32_t* u = reinterpret_cast<const uint32_t*>(&v[l]);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          f[8 * l + 2 * i] = __uint_as_float(u[i] << 16);
          f[8 * l + 2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
        }
      }
    }
  }
};

}  // namespace ds::backend::cuda
