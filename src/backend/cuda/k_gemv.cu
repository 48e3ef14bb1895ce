// Small-M GEMM (decode, M <= 32 tokens): y = x W^T with W streamed once from HBM, fp32 activations,
// fp32-accurate results.
//
// FP8 / BF16 weights: tensor cores, mma.m16n8k8 in TF32. Both weight formats are exact in TF32 (3 / 7
// mantissa bits <= 10); each activation is split into x_hi = tf32(x) and x_lo = tf32(x - x_hi), two MMAs,
// so products keep ~22 bits of x: the result matches an fp32 dot product to rounding (the exactness the
// CPU reference needs), at tensor-core instead of FMA throughput. A warp owns 16 weight rows; per step of
// 64 columns lane (g = lane / 4, t = lane % 4) loads 16 contiguous weights of rows g and g + 8 (one or
// two 16-byte loads each) and 16 activations of token g; the K index of MMA slot c in MMA i is
// 16 * (c % 4) + 2 * i + c / 4, the same permutation for A and B, so every operand comes from those
// contiguous loads. The FP8 block scale (one per 16 rows x 64 columns) multiplies each step's partial.
// The 8 warps of a block split K; blockIdx.y splits it further when there are too few rows to fill the
// GPU, the last block of a row range summing the slices in a fixed order.
//
// F32 weights (rare: no checkpoint ships them): lane = row SIMT kernel, M <= 8.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/tf32_mma.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kWarps = 8;

// K slices: every block of a row range writes its partial sums; the last of them to finish (counted in
// counters[blockIdx.x], reset for the next launch) adds the slices in a fixed order: one launch, and
// the same result whichever block finishes last.
__device__ bool last_slice_block(int* counters) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(&counters[blockIdx.x], 1) == int(gridDim.y) - 1;
    if (last) counters[blockIdx.x] = 0;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}
__device__ __forceinline__ float sum_slices(const float* partial, size_t MN, size_t i) {
  float s = 0.f;
  for (unsigned k = 0; k < gridDim.y; ++k) s += __ldcg(partial + k * MN + i);  // L2: other SMs wrote them
  return s;
}

// NT token tiles of 8 (M <= 8 * NT).
template <int WT, int NT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_tc_kernel(const float* __restrict__ x, int M, int K, const uint8_t* __restrict__ w,
                   const float* __restrict__ scale, int scale_pitch, int N, float* __restrict__ y,
                   float* __restrict__ partial, int* __restrict__ counters) {
  constexpr int U = 2, EB = WT == int(WType::FP8) ? 1 : 2;
  __shared__ float part[kWarps][16][8 * NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * 16, r0 = n0 + g, r1 = n0 + g + 8;
  const bool ok0 = r0 < N, ok1 = r1 < N;
  const int nsteps = (K + 63) / 64;
  const int slices = kWarps * gridDim.y, slice = blockIdx.y * kWarps + warp;
  const uint8_t* w0 = w + size_t(ok0 ? r0 : n0) * K * EB;
  const uint8_t* w1 = w + size_t(ok1 ? r1 : n0) * K * EB;
  const float* srow = scale ? scale + size_t(n0 / 128) * scale_pitch : nullptr;
  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  for (int s0 = slice; s0 < nsteps; s0 += U * slices) {
    Row16<WT> wa[U], wb[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = s0 + u * slices, k = st * 64 + 16 * t;
      const bool kin = st < nsteps && k < K;
      wa[u].load(w0, k, kin && ok0);
      wb[u].load(w1, k, kin && ok1);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = s0 + u * slices, k = st * 64 + 16 * t;
      if (st >= nsteps) break;
      const bool kin = k < K;
      float fa[16], fb[16];
      wa[u].decode(fa);
      wb[u].decode(fb);
      const float sc = WT == int(WType::FP8) ? srow[(st * 64) / 128] : 1.f;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int m = 8 * j + g;
        float xv[16];
        load_act16(x + size_t(m) * K + k, kin && m < M, xv);
        float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const uint32_t h0 = to_tf32(xv[2 * i]), h1 = to_tf32(xv[2 * i + 1]);
          const uint32_t l0 = to_tf32(xv[2 * i] - __uint_as_float(h0)), l1 = to_tf32(xv[2 * i + 1] - __uint_as_float(h1));
          const uint32_t a0 = __float_as_uint(fa[2 * i]), a1 = __float_as_uint(fb[2 * i]);
          const uint32_t a2 = __float_as_uint(fa[2 * i + 1]), a3 = __float_as_uint(fb[2 * i + 1]);
          mma_tf32(d, a0, a1, a2, a3, h0, h1);
          mma_tf32(d, a0, a1, a2, a3, l0, l1);
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][e] = fmaf(sc, d[e], acc[j][e]);
      }
    }
  }
  // acc[j]: (row g, tokens 8j + 2t, 8j + 2t + 1), (row g + 8, the same tokens).
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    part[warp][g][8 * j + 2 * t] = acc[j][0];
    part[warp][g][8 * j + 2 * t + 1] = acc[j][1];
    part[warp][g + 8][8 * j + 2 * t] = acc[j][2];
    part[warp][g + 8][8 * j + 2 * t + 1] = acc[j][3];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < 16 * 8 * NT; idx += blockDim.x) {
    const int r = idx / (8 * NT), m = idx % (8 * NT), n = n0 + r;
    if (n >= N || m >= M) continue;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) s += part[k][r][m];
    if (gridDim.y == 1) y[size_t(m) * N + n] = s;
    else partial[(size_t(blockIdx.y) * M + m) * N + n] = s;
  }
  if (gridDim.y > 1 && last_slice_block(counters)) {
    for (int idx = threadIdx.x; idx < 16 * M; idx += blockDim.x) {
      const int r = idx / M, m = idx % M, n = n0 + r;
      if (n < N) y[size_t(m) * N + n] = sum_slices(partial, size_t(M) * N, size_t(m) * N + n);
    }
  }
}

// F32 weights: lane = row, 64 bytes (16 weights) of a row per step, x read as broadcasts.
template <int MT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_f32_kernel(const float* __restrict__ x, int M, int K, const float* __restrict__ w, int N,
                    float* __restrict__ y, float* __restrict__ partial, int* __restrict__ counters) {
  __shared__ float part[kWarps][MT][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * 32 + lane;
  const bool row_ok = n < N;
  const int nsteps = (K + 15) / 16;
  const int slices = kWarps * gridDim.y, slice = blockIdx.y * kWarps + warp;
  const float4* wrow = reinterpret_cast<const float4*>(w + size_t(row_ok ? n : 0) * K);
  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.f;
  for (int st = slice; st < nsteps; st += slices) {
    float4 wv[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) wv[j] = row_ok && st * 16 + 4 * j < K ? __ldg(wrow + st * 4 + j) : make_float4(0, 0, 0, 0);
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      if (m >= M) break;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (st * 16 + 4 * j >= K) break;
        const float4 xv = __ldg(reinterpret_cast<const float4*>(x + size_t(m) * K + st * 16) + j);
        acc[m] = fmaf(xv.x, wv[j].x, acc[m]);
        acc[m] = fmaf(xv.y, wv[j].y, acc[m]);
        acc[m] = fmaf(xv.z, wv[j].z, acc[m]);
        acc[m] = fmaf(xv.w, wv[j].w, acc[m]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) part[warp][m][lane] = acc[m];
  __syncthreads();
  const int m = threadIdx.x / 32;
  if (m < MT && m < M && row_ok) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) s += part[k][m][lane];
    if (gridDim.y == 1) y[size_t(m) * N + n] = s;
    else partial[(size_t(blockIdx.y) * M + m) * N + n] = s;
  }
  if (gridDim.y > 1 && last_slice_block(counters) && m < MT && m < M && row_ok)
    y[size_t(m) * N + n] = sum_slices(partial, size_t(M) * N, size_t(m) * N + n);
}

template <int WT>
void launch_tc(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
               cudaStream_t st) {
  dim3 grid(unsigned((w.rows + 15) / 16), unsigned(ky));
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  if (M <= 8) gemv_tc_kernel<WT, 1><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.scale, w.scale_pitch, w.rows, y, partial, counters);
  else if (M <= 16) gemv_tc_kernel<WT, 2><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.scale, w.scale_pitch, w.rows, y, partial, counters);
  else gemv_tc_kernel<WT, 4><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.scale, w.scale_pitch, w.rows, y, partial, counters);
}

void launch_f32(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                cudaStream_t st) {
  dim3 grid(unsigned((w.rows + 31) / 32), unsigned(ky));
  const float* wd = static_cast<const float*>(w.data);
  if (M <= 2) gemv_f32_kernel<2><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.rows, y, partial, counters);
  else gemv_f32_kernel<8><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.rows, y, partial, counters);
}
}  // namespace

int gemv_max_m(const WeightRef& w) { return w.type == WType::F32 ? 8 : kGemvMaxM; }

bool gemv_supported(const WeightRef& w) {
  const int e = w.type == WType::F32 ? 4 : 16;
  return w.cols > 0 && w.cols % e == 0 && (reinterpret_cast<uintptr_t>(w.data) % 16) == 0 &&
         (w.type != WType::FP8 || w.scale != nullptr);
}

int gemv_ksplit(const WeightRef& w, int num_sms) {
  // Enough warps for ~48 per SM, each K slice keeping >= 2 steps.
  const int rows_per_block = w.type == WType::F32 ? 32 : 16;
  const int64_t blocks = (w.rows + rows_per_block - 1) / rows_per_block;
  const int64_t nsteps = w.type == WType::F32 ? (w.cols + 15) / 16 : (w.cols + 63) / 64;
  if (blocks > kGemvMaxCounters) return 1;
  int64_t ky = (int64_t(num_sms) * 48 + blocks * kWarps - 1) / (blocks * kWarps);
  ky = std::min<int64_t>(ky, std::max<int64_t>(1, nsteps / (kWarps * 2)));
  return int(std::max<int64_t>(1, std::min<int64_t>(ky, 16)));
}

void launch_gemv(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                 cudaStream_t st) {
  switch (w.type) {
    case WType::FP8: launch_tc<int(WType::FP8)>(x, M, w, y, partial, counters, ky, st); break;
    case WType::BF16: launch_tc<int(WType::BF16)>(x, M, w, y, partial, counters, ky, st); break;
    case WType::F32: launch_f32(x, M, w, y, partial, counters, ky, st); break;
  }
}

}  // namespace ds::backend::cuda
