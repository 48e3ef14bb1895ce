// Batched SIMT GEMM with fp32 activations and FP8 / BF16 / F32 weights dequantised on load (each weight
// element becomes float(w) * block scale, exactly the value the CPU backend multiplies with), fp32
// accumulation. The exact-numerics path for any shape (partial 128-blocks, odd K), and the MLA weight
// absorption (per-head slices of kv_b_proj, transposed or not). 64x64 tiles, 16-deep K steps,
// 256 threads with a 4x4 register block each.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int BM = 64, BN = 64, BK = 16;

template <int WT>
__device__ __forceinline__ float load_w(const void* data, size_t idx) {
  if constexpr (WT == int(WType::FP8)) {
    __nv_fp8_e4m3 q;
    q.__x = static_cast<const uint8_t*>(data)[idx];
    return float(q);
  } else if constexpr (WT == int(WType::BF16)) {
    return __uint_as_float(uint32_t(static_cast<const uint16_t*>(data)[idx]) << 16);
  } else {
    return static_cast<const float*>(data)[idx];
  }
}

template <int WT, bool TRANS>
__global__ void __launch_bounds__(256) gemm_kernel(GemmArgs g, WeightRef w) {
  pdl_prologue();
  __shared__ float As[BK][BM + 4];
  __shared__ float Ws[BK][BN + 4];
  const int b = blockIdx.z;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const float* A = g.a + b * g.a_bstride;
  const int wrow0 = g.w_row0 + b * g.w_row_bstride;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < g.K; k0 += BK) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {  // A tile: 64 rows x 16 k
      const int idx = tid + e * 256, r = idx / BK, c = idx % BK;
      const int m = m0 + r, k = k0 + c;
      As[c][r] = (m < g.M && k < g.K) ? A[size_t(m) * g.lda + k] : 0.f;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {  // W tile: 16 k x 64 n
      const int idx = tid + e * 256;
      int kk, nn;
      if (TRANS) kk = idx % BK, nn = idx / BK;  // W[row0 + n, k]: contiguous along k
      else kk = idx / BN, nn = idx % BN;        // W[row0 + k, n]: contiguous along n
      const int k = k0 + kk, n = n0 + nn;
      float v = 0.f;
      if (k < g.K && n < g.N) {
        const int wr = TRANS ? wrow0 + n : wrow0 + k, wc = TRANS ? k : n;
        v = load_w<WT>(w.data, size_t(wr) * w.cols + wc);
        if constexpr (WT == int(WType::FP8)) v *= w.scale[size_t(wr / 128) * w.scale_pitch + wc / 128];
      }
      Ws[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4], ww[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) ww[j] = Ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], ww[j], acc[i][j]);
    }
    __syncthreads();
  }
  float* C = g.c + b * g.c_bstride;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= g.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx + 16 * j;
      if (n < g.N) C[size_t(m) * g.ldc + n] = acc[i][j];
    }
  }
}

template <int WT>
void launch_w(const GemmArgs& g, const WeightRef& w, cudaStream_t st) {
  dim3 grid(unsigned((g.N + BN - 1) / BN), unsigned((g.M + BM - 1) / BM), unsigned(g.batch));
  if (g.trans_w) launch_k(gemm_kernel<WT, true>, grid, 256, 0, st, g, w);
  else launch_k(gemm_kernel<WT, false>, grid, 256, 0, st, g, w);
}
}  // namespace

void launch_gemm_simt(const GemmArgs& g, const WeightRef& w, cudaStream_t st) {
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  switch (w.type) {
    case WType::FP8: launch_w<int(WType::FP8)>(g, w, st); break;
    case WType::BF16: launch_w<int(WType::BF16)>(g, w, st); break;
    case WType::F32: launch_w<int(WType::F32)>(g, w, st); break;
  }
}

namespace {
__device__ __forceinline__ void store_dequant(float* out, size_t i, float v) { out[i] = v; }
__device__ __forceinline__ void store_dequant(uint16_t* out, size_t i, float v) {
  out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

template <int WT, typename Out>
__global__ void dequant_kernel(WeightRef w, int row0, int rows, Out* out) {
  pdl_prologue();
  const size_t n = size_t(rows) * w.cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const int r = row0 + int(i / w.cols), c = int(i % w.cols);
    float v = load_w<WT>(w.data, size_t(r) * w.cols + c);
    if constexpr (WT == int(WType::FP8)) v *= w.scale[(r / 128) * w.scale_pitch + c / 128];
    store_dequant(out, i, v);
  }
}

template <typename Out>
void launch_dequant(const WeightRef& w, int row0, int rows, Out* out, cudaStream_t st) {
  if (rows <= 0 || w.cols == 0) return;
  const size_t n = size_t(rows) * w.cols;
  const unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256, 4096));
  switch (w.type) {
    case WType::FP8: launch_k(dequant_kernel<int(WType::FP8), Out>, blocks, 256, 0, st, w, row0, rows, out); break;
    case WType::BF16: launch_k(dequant_kernel<int(WType::BF16), Out>, blocks, 256, 0, st, w, row0, rows, out); break;
    case WType::F32: launch_k(dequant_kernel<int(WType::F32), Out>, blocks, 256, 0, st, w, row0, rows, out); break;
  }
}
}  // namespace

void launch_dequant_rows(const WeightRef& w, int row0, int rows, float* out, cudaStream_t st) {
  launch_dequant(w, row0, rows, out, st);
}

void launch_dequant_rows_bf16(const WeightRef& w, int row0, int rows, uint16_t* out, cudaStream_t st) {
  launch_dequant(w, row0, rows, out, st);
}

}  // namespace ds::backend::cuda
