// The decode GEMV as it was before issue 18 (main at c7f2d3c, k_gemv.cu's tensor-core kernel at M <= 8 and
// its K-split rule), kept only so that gpu_bench times "before" and "after" in the same process. Not
// used by the backend.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/tf32_mma.cuh"
#include "gemv_before.h"

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

}  // namespace

int gemv_ksplit_before(const WeightRef& w, int num_sms) {
  // Enough warps for ~48 per SM, each K slice keeping >= 2 steps.
  const int rows_per_block = w.type == WType::F32 ? 32 : 16;
  const int64_t blocks = (w.rows + rows_per_block - 1) / rows_per_block;
  const int64_t nsteps = w.type == WType::F32 ? (w.cols + 15) / 16 : (w.cols + 63) / 64;
  if (blocks > kGemvMaxCounters) return 1;
  int64_t ky = (int64_t(num_sms) * 48 + blocks * kWarps - 1) / (blocks * kWarps);
  ky = std::min<int64_t>(ky, std::max<int64_t>(1, nsteps / (kWarps * 2)));
  return int(std::max<int64_t>(1, std::min<int64_t>(ky, 16)));
}

void launch_gemv_before(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                        cudaStream_t st) {
  const dim3 grid(unsigned((w.rows + 15) / 16), unsigned(ky));
  const uint8_t* wd = static_cast<const uint8_t*>(w.data);
  if (w.type == WType::FP8)
    gemv_tc_kernel<int(WType::FP8), 1><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.scale, w.scale_pitch, w.rows, y, partial, counters);
  else
    gemv_tc_kernel<int(WType::BF16), 1><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, wd, w.scale, w.scale_pitch, w.rows, y, partial, counters);
}

}  // namespace ds::backend::cuda
