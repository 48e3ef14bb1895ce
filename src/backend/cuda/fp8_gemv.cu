#include <cuda_fp8.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fp8_gemv.h"

namespace ds::backend::cuda {

namespace {
constexpr int kWarpsPerBlock = 8;  // one warp per output row

// Lane l of the warp owning row n reads 16 consecutive weight bytes per step (one 16-byte load),
// converts them with the block scale and multiplies with the same 16 columns of every x row.
template <int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    fp8_gemv_kernel(const __nv_bfloat16* __restrict__ x, int K, const uint8_t* __restrict__ w,
                    const float* __restrict__ w_scale, int N, __nv_bfloat16* __restrict__ y) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * kWarpsPerBlock + warp;
  if (n >= N) return;
  const int scale_cols = (K + 127) / 128;
  const float* srow = w_scale + (n / 128) * scale_cols;
  const uint8_t* wrow = w + size_t(n) * K;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;
  // kUnroll 16-byte loads are issued before any is used: enough bytes in flight per warp to
  // approach HBM bandwidth (one load at a time leaves the row latency-bound).
  constexpr int kUnroll = 4, kStep = 32 * 16;
  for (int base = lane * 16; base < K; base += kStep * kUnroll) {
    uint4 packed[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (base + u * kStep < K) packed[u] = __ldg(reinterpret_cast<const uint4*>(wrow + base + u * kStep));
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k0 = base + u * kStep;
      if (k0 >= K) break;
      const uint8_t* b = reinterpret_cast<const uint8_t*>(&packed[u]);
      const float s = srow[k0 / 128];
      float wv[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        __nv_fp8_e4m3 q;
        q.__x = b[i];
        wv[i] = float(q) * s;
      }
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4* xr = reinterpret_cast<const uint4*>(x + size_t(m) * K + k0);
        uint4 xa = __ldg(xr), xb = __ldg(xr + 1);  // the 16 bf16 of this row, two 16-byte loads
        const __nv_bfloat162* xp[2] = {reinterpret_cast<const __nv_bfloat162*>(&xa),
                                       reinterpret_cast<const __nv_bfloat162*>(&xb)};
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          float2 xv = __bfloat1622float2(xp[i / 4][i % 4]);
          d = fmaf(xv.x, wv[2 * i], fmaf(xv.y, wv[2 * i + 1], d));
        }
        acc[m] += d;
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float v = acc[m];
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) y[size_t(m) * N + n] = __float2bfloat16(v);
  }
}

template <int M>
void launch(const __nv_bfloat16* x, int K, const uint8_t* w, const float* s, int N, __nv_bfloat16* y,
            cudaStream_t st) {
  dim3 grid((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
  fp8_gemv_kernel<M><<<grid, kWarpsPerBlock * 32, 0, st>>>(x, K, w, s, N, y);
}
}  // namespace

void fp8_gemv(const __nv_bfloat16* x, int M, int K, const uint8_t* w, const float* w_scale, int N,
              __nv_bfloat16* y, cudaStream_t stream) {
  DS_CHECK(M >= 1 && M <= kFp8GemvMaxM, "fp8_gemv: M = {} (supported 1..{})", M, kFp8GemvMaxM);
  DS_CHECK(K % 16 == 0 && K > 0 && N > 0, "fp8_gemv: K = {} must be a positive multiple of 16, N = {}", K, N);
  switch (M) {
    case 1: launch<1>(x, K, w, w_scale, N, y, stream); break;
    case 2: launch<2>(x, K, w, w_scale, N, y, stream); break;
    case 3: launch<3>(x, K, w, w_scale, N, y, stream); break;
    case 4: launch<4>(x, K, w, w_scale, N, y, stream); break;
    case 5: launch<5>(x, K, w, w_scale, N, y, stream); break;
    case 6: launch<6>(x, K, w, w_scale, N, y, stream); break;
    case 7: launch<7>(x, K, w, w_scale, N, y, stream); break;
    default: launch<8>(x, K, w, w_scale, N, y, stream); break;
  }
  DS_CUDA_CHECK_LAUNCH();
}

}  // namespace ds::backend::cuda
