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

// Head b's activation rows A [M, K] into shared memory (after pdl_prologue: the kernel before wrote them).
__device__ __forceinline__ void stage_activations(const GemmArgs& g, int b, float* As) {
  const float* A = g.a + b * g.a_bstride;
  for (int i = threadIdx.x; i < g.M * g.K; i += blockDim.x) As[i] = A[size_t(i / g.K) * g.lda + i % g.K];
  __syncthreads();
}

// Both kernels load their weights (and block scales) into registers before pdl_prologue (pdl.cuh: weights
// are never written during a step), so the bytes stream in while the kernel before them — the indexer's
// top-k, the attention's combine — still runs; the activations follow the wait. MT: the token count
// rounded up to 1, 2, 4 or 8 (accumulators and shared memory sized to it).

// C[m, n] = sum_k A[m, k] * W[row0 + k, n] (not transposed: absorb_q). A block takes 128 columns of one
// head (4 per lane, 4-byte loads, a warp reads 128 contiguous bytes of a row); its 8 warps split the
// K rows between them (rows warp, warp + 8, ...: the first kPreNt of them loaded early) and their partial
// sums meet in shared memory, in warp order.
constexpr int kPreNt = 16;  // K <= 128 (DeepSeek's nope dim) entirely early
template <int MT>
__global__ void __launch_bounds__(256) head_gemv_nt_kernel(GemmArgs g, WeightRef w) {
  extern __shared__ __align__(16) float sm[];
  const int b = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * 128 + lane * 4;
  const int wrow0 = g.w_row0 + b * g.w_row_bstride;
  const uint8_t* W = static_cast<const uint8_t*>(w.data);
  const bool nok = n < g.N;
  uint32_t q[kPreNt];
  float s[kPreNt];
#pragma unroll
  for (int i = 0; i < kPreNt; ++i) {
    const int k = warp + kWarps * i, wr = wrow0 + k;
    const bool ok = nok && k < g.K;
    q[i] = ok ? *reinterpret_cast<const uint32_t*>(W + size_t(wr) * w.cols + n) : 0u;
    s[i] = ok ? w.scale[size_t(wr / 128) * w.scale_pitch + n / 128] : 0.f;
  }
  pdl_prologue();
  float* As = sm;                // [MT][K]
  float* red = sm + MT * g.K;    // [kWarps][MT][128]
  stage_activations(g, b, As);
  float acc[MT][4] = {};
  auto step = [&](int k, uint32_t qk, float sk) {
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = fp8_at(qk, j) * sk;
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < g.M)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[m][j] = fmaf(As[m * g.K + k], v[j], acc[m][j]);
  };
  if (nok) {
#pragma unroll
    for (int i = 0; i < kPreNt; ++i)
      if (warp + kWarps * i < g.K) step(warp + kWarps * i, q[i], s[i]);
    for (int k = warp + kWarps * kPreNt; k < g.K; k += kWarps) {
      const int wr = wrow0 + k;
      step(k, *reinterpret_cast<const uint32_t*>(W + size_t(wr) * w.cols + n),
           w.scale[size_t(wr / 128) * w.scale_pitch + n / 128]);
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m)
    if (m < g.M)
      *reinterpret_cast<float4*>(&red[(warp * MT + m) * 128 + lane * 4]) =
          make_float4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
  __syncthreads();
  float* C = g.c + b * g.c_bstride;
  for (int i = threadIdx.x; i < g.M * 128; i += blockDim.x) {
    const int m = i / 128, c = i % 128, nn = blockIdx.x * 128 + c;
    if (nn >= g.N) continue;
    float sum = 0.f;
#pragma unroll
    for (int v = 0; v < kWarps; ++v) sum += red[(v * MT + m) * 128 + c];
    C[size_t(m) * g.ldc + nn] = sum;
  }
}

// C[m, n] = sum_k A[m, k] * W[row0 + n, k] (transposed: absorb_out). A warp takes kColsTn output columns:
// lane l the 4 consecutive bytes at k = 4l + 128i of each (the warp reads 128 contiguous bytes of a row per
// round, and the activations as conflict-free float4s), then the warp sums. Two columns a warp: at 128
// heads the grid fits one wave, so every block's weights load early.
constexpr int kColsTn = 2, kPreTn = kMaxKTn / 128;
template <int MT>
__global__ void __launch_bounds__(256) head_gemv_tn_kernel(GemmArgs g, WeightRef w) {
  extern __shared__ __align__(16) float sm[];
  const int b = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n0 = (blockIdx.x * kWarps + warp) * kColsTn;
  uint32_t q[kColsTn][kPreTn];
  float s[kColsTn][kPreTn];
#pragma unroll
  for (int c = 0; c < kColsTn; ++c) {
    const int n = n0 + c, wr = g.w_row0 + b * g.w_row_bstride + n;
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + size_t(wr) * w.cols;
    const float* srow = w.scale + size_t(wr / 128) * w.scale_pitch;
#pragma unroll
    for (int i = 0; i < kPreTn; ++i) {
      const int k = lane * 4 + 128 * i;
      const bool ok = n < g.N && k < g.K;
      q[c][i] = ok ? *reinterpret_cast<const uint32_t*>(row + k) : 0u;
      s[c][i] = ok ? srow[i] : 0.f;
    }
  }
  pdl_prologue();
  float* As = sm;  // [MT][K]
  stage_activations(g, b, As);
  float* C = g.c + b * g.c_bstride;
#pragma unroll
  for (int c = 0; c < kColsTn; ++c) {
    const int n = n0 + c;
    if (n >= g.N) break;
    float acc[MT] = {};
#pragma unroll
    for (int i = 0; i < kPreTn; ++i) {
      const int k = lane * 4 + 128 * i;
      if (k >= g.K) break;
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = fp8_at(q[c][i], j) * s[c][i];
#pragma unroll
      for (int m = 0; m < MT; ++m)
        if (m < g.M) {
          const float4 a = *reinterpret_cast<const float4*>(&As[m * g.K + k]);
          acc[m] = fmaf(a.x, v[0], fmaf(a.y, v[1], fmaf(a.z, v[2], fmaf(a.w, v[3], acc[m]))));
        }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      if (m >= g.M) break;
      float v = acc[m];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) C[size_t(m) * g.ldc + n] = v;
    }
  }
}

template <int MT>
void launch_mt(const GemmArgs& g, const WeightRef& w, cudaStream_t st) {
  if (!g.trans_w) {
    const size_t smem = (size_t(MT) * g.K + size_t(kWarps) * MT * 128) * sizeof(float);
    const dim3 grid{(unsigned(g.N) + 127) / 128, unsigned(g.batch)};
    launch_k(head_gemv_nt_kernel<MT>, grid, 32 * kWarps, smem, st, g, w);
  } else {
    const size_t smem = size_t(MT) * g.K * sizeof(float);
    const unsigned cols = kWarps * kColsTn;
    launch_k(head_gemv_tn_kernel<MT>, dim3((unsigned(g.N) + cols - 1) / cols, unsigned(g.batch)), 32 * kWarps, smem,
             st, g, w);
  }
}
}  // namespace

bool launch_head_gemv(const GemmArgs& g, const WeightRef& w, cudaStream_t st) {
  if (w.type != WType::FP8 || g.M < 1 || g.M > kMaxM || g.batch < 1 || g.N < 1) return false;
  if (!g.trans_w && (g.K > kMaxKNt || g.N % 4 || w.cols % 4)) return false;
  if (g.trans_w && (g.K > kMaxKTn || g.K % 4 || w.cols % 4)) return false;
  switch (g.M) {
    case 1: launch_mt<1>(g, w, st); break;
    case 2: launch_mt<2>(g, w, st); break;
    case 3:
    case 4: launch_mt<4>(g, w, st); break;
    default: launch_mt<8>(g, w, st); break;
  }
  return true;
}

}  // namespace ds::backend::cuda
