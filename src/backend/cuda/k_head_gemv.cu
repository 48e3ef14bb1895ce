// The MLA weight absorption at decode sizes (<= 8 tokens): per head, a few rows of activations times a
// slice of kv_b_proj (FP8 + 128x128 block scales). The tiled SIMT GEMM spends ~78 us on each of these at
// one token for ~3 us of weight bytes (64-row tiles, byte loads); here every weight byte is read once,
// coalesced, with the activations in shared memory. fp32 accumulation as everywhere.
#include <cuda_fp8.h>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kMaxM = 8;
constexpr int kMaxKNt = 256, kMaxKTn = 1024;
constexpr int kWarps = 8;  // 256 threads

__device__ __forceinline__ float fp8_at(uint32_t word, int j) {
  __nv_fp8_e4m3 q;
  q.__x = uint8_t((word >> (8 * j)) & 255u);
  return float(q);
}

// C[m, n] = sum_k A[m, k] * W[row0 + k, n] (not transposed: absorb_q). A block takes 128 columns of one
// head (4 per lane, 4-byte loads, a warp reads 128 contiguous bytes of a row); its 8 warps split the
// K rows between them and their partial sums meet in shared memory, in warp order.
__global__ void __launch_bounds__(256) head_gemv_nt_kernel(GemmArgs g, WeightRef w) {
  pdl_prologue();
  __shared__ float As[kMaxM * kMaxKNt];
  __shared__ __align__(16) float red[kWarps][kMaxM][128];
  const int b = blockIdx.y;
  const float* A = g.a + b * g.a_bstride;
  for (int i = threadIdx.x; i < g.M * g.K; i += blockDim.x) As[i] = A[size_t(i / g.K) * g.lda + i % g.K];
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * 128 + lane * 4;
  const int wrow0 = g.w_row0 + b * g.w_row_bstride;
  const uint8_t* W = static_cast<const uint8_t*>(w.data);
  float acc[kMaxM][4] = {};
  if (n < g.N) {
#pragma unroll 4
    for (int k = warp; k < g.K; k += kWarps) {
      const int wr = wrow0 + k;
      const uint32_t q = *reinterpret_cast<const uint32_t*>(W + size_t(wr) * w.cols + n);
      const float s = w.scale[size_t(wr / 128) * w.scale_pitch + n / 128];
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = fp8_at(q, j) * s;
#pragma unroll
      for (int m = 0; m < kMaxM; ++m)
        if (m < g.M)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[m][j] = fmaf(As[m * g.K + k], v[j], acc[m][j]);
    }
  }
#pragma unroll
  for (int m = 0; m < kMaxM; ++m)
    if (m < g.M) *reinterpret_cast<float4*>(&red[warp][m][lane * 4]) = make_float4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
  __syncthreads();
  float* C = g.c + b * g.c_bstride;
  for (int i = threadIdx.x; i < g.M * 128; i += blockDim.x) {
    const int m = i / 128, c = i % 128, nn = blockIdx.x * 128 + c;
    if (nn >= g.N) continue;
    float sum = 0.f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) sum += red[v][m][c];
    C[size_t(m) * g.ldc + nn] = sum;
  }
}

// C[m, n] = sum_k A[m, k] * W[row0 + n, k] (transposed: absorb_out). One warp per output column: lane l
// takes 4 consecutive bytes at k = 4l + 128i (the warp reads 128 contiguous bytes of the row per round,
// and the activations as conflict-free float4s), then the warp sums.
__global__ void __launch_bounds__(256) head_gemv_tn_kernel(GemmArgs g, WeightRef w) {
  pdl_prologue();
  __shared__ __align__(16) float As[kMaxM * kMaxKTn];
  const int b = blockIdx.y;
  const float* A = g.a + b * g.a_bstride;
  for (int i = threadIdx.x; i < g.M * g.K; i += blockDim.x) As[i] = A[size_t(i / g.K) * g.lda + i % g.K];
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * kWarps + warp;
  if (n >= g.N) return;
  const int wr = g.w_row0 + b * g.w_row_bstride + n;
  const uint8_t* row = static_cast<const uint8_t*>(w.data) + size_t(wr) * w.cols;
  const float* srow = w.scale + size_t(wr / 128) * w.scale_pitch;
  float acc[kMaxM] = {};
#pragma unroll 2
  for (int k = lane * 4; k < g.K; k += 128) {
    const uint32_t q = *reinterpret_cast<const uint32_t*>(row + k);
    const float s = srow[k / 128];
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = fp8_at(q, j) * s;
#pragma unroll
    for (int m = 0; m < kMaxM; ++m)
      if (m < g.M) {
        const float4 a = *reinterpret_cast<const float4*>(&As[m * g.K + k]);
        acc[m] = fmaf(a.x, v[0], fmaf(a.y, v[1], fmaf(a.z, v[2], fmaf(a.w, v[3], acc[m]))));
      }
  }
  float* C = g.c + b * g.c_bstride;
#pragma unroll
  for (int m = 0; m < kMaxM; ++m) {
    if (m >= g.M) break;
    float v = acc[m];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) C[size_t(m) * g.ldc + n] = v;
  }
}
}  // namespace

bool launch_head_gemv(const GemmArgs& g, const WeightRef& w, cudaStream_t st) {
  if (w.type != WType::FP8 || g.M < 1 || g.M > kMaxM || g.batch < 1 || g.N < 1) return false;
  if (!g.trans_w) {
    if (g.K > kMaxKNt || g.N % 4 || w.cols % 4) return false;
    launch_k(head_gemv_nt_kernel, dim3((unsigned(g.N) + 127) / 128, unsigned(g.batch)), 32 * kWarps, 0, st, g, w);
  } else {
    if (g.K > kMaxKTn || g.K % 4 || w.cols % 4) return false;
    launch_k(head_gemv_tn_kernel, dim3((unsigned(g.N) + kWarps - 1) / kWarps, unsigned(g.batch)), 32 * kWarps, 0, st,
        g, w);
  }
  return true;
}

}  // namespace ds::backend::cuda
