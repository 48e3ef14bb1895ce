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
// K rows between them in groups of 4 consecutive rows (groups warp, warp + 8, ...: the first kPreNt rows
// of each warp loaded early), so one float4 of shared memory brings a token's 4 activations of a group;
// the warps' partial sums meet in shared memory, in warp order.
constexpr int kPreNt = 16, kPreGroups = kPreNt / 4;  // K <= 128 (DeepSeek's nope dim) entirely early
template <int MT>
__global__ void __launch_bounds__(256, 4) head_gemv_nt_kernel(GemmArgs g, WeightRef w) {
  extern __shared__ __align__(16) float sm[];
  const int b = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * 128 + lane * 4;
  const int wrow0 = g.w_row0 + b * g.w_row_bstride;
  const uint8_t* W = static_cast<const uint8_t*>(w.data);
  const bool nok = n < g.N;
  // A group's 4 rows share their 128-row scale block (wrow0 % 4 == 0: the launcher checks).
  uint32_t q[kPreNt];
  float s[kPreGroups];
#pragma unroll
  for (int i = 0; i < kPreNt; ++i) {
    const int k = 4 * (warp + kWarps * (i / 4)) + i % 4, wr = wrow0 + k;
    const bool ok = nok && k < g.K;
    q[i] = ok ? *reinterpret_cast<const uint32_t*>(W + size_t(wr) * w.cols + n) : 0u;
    if (i % 4 == 0) s[i / 4] = ok ? w.scale[size_t(wr / 128) * w.scale_pitch + n / 128] : 0.f;
  }
  pdl_prologue();
  float* As = sm;                // [MT][K]
  float* red = sm + MT * g.K;    // [kWarps][MT][128]
  stage_activations(g, b, As);
  float acc[MT][4] = {};
  // Rows k0 .. k0 + 3 (K % 4 == 0: all or none of them exist).
  auto group = [&](int k0, const uint32_t (&qk)[4], float sk) {
    float v[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int j = 0; j < 4; ++j) v[r][j] = fp8_at(qk[r], j) * sk;
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < g.M) {
        const float4 a = *reinterpret_cast<const float4*>(&As[m * g.K + k0]);
        const float av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[m][j] = fmaf(av[r], v[r][j], acc[m][j]);
      }
  };
  if (nok) {
#pragma unroll
    for (int i4 = 0; i4 < kPreGroups; ++i4) {
      const int k0 = 4 * (warp + kWarps * i4);
      if (k0 < g.K) {
        const uint32_t qk[4] = {q[4 * i4], q[4 * i4 + 1], q[4 * i4 + 2], q[4 * i4 + 3]};
        group(k0, qk, s[i4]);
      }
    }
    for (int k0 = 4 * (warp + kWarps * kPreGroups); k0 < g.K; k0 += 4 * kWarps) {
      uint32_t qk[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) qk[r] = *reinterpret_cast<const uint32_t*>(W + size_t(wrow0 + k0 + r) * w.cols + n);
      group(k0, qk, w.scale[size_t((wrow0 + k0) / 128) * w.scale_pitch + n / 128]);
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

// C[m, n] = sum_k A[m, k] * W[row0 + n, k] (transposed: absorb_out). A warp takes kColsTn consecutive output
// columns: lane l the 4 consecutive bytes at k = 4l + 128i of each (the warp reads 128 contiguous bytes of a
// row per round, and the activations as conflict-free float4s, each serving the kColsTn columns), then the
// warp sums. The columns share their 128-row scale block (row0 % 4 == 0: the launcher checks), so a lane
// holds KP scales. Four columns a warp and at most 64 registers (4 blocks per SM): at 128 heads the grid of
// 512 blocks is one wave, so every block's weights load early (two columns a warp: 1,024 blocks, 2.6
// waves at 8 tokens, 27 us).
constexpr int kColsTn = 4;
template <int MT, int KP>
__global__ void __launch_bounds__(256, 4) head_gemv_tn_kernel(GemmArgs g, WeightRef w) {
  extern __shared__ __align__(16) float sm[];
  const int b = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n0 = (blockIdx.x * kWarps + warp) * kColsTn;
  const int wr0 = g.w_row0 + b * g.w_row_bstride + n0;
  uint32_t q[kColsTn][KP];
  float s[KP];
#pragma unroll
  for (int i = 0; i < KP; ++i) {
    const int k = lane * 4 + 128 * i;
    s[i] = n0 < g.N && k < g.K ? w.scale[size_t(wr0 / 128) * w.scale_pitch + i] : 0.f;
#pragma unroll
    for (int c = 0; c < kColsTn; ++c) {
      const bool ok = n0 + c < g.N && k < g.K;
      q[c][i] = ok ? *reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(w.data) +
                                                        size_t(wr0 + c) * w.cols + k)
                   : 0u;
    }
  }
  pdl_prologue();
  float* As = sm;  // [MT][K]
  stage_activations(g, b, As);
  float* C = g.c + b * g.c_bstride;
  // Tokens in passes of up to 4 (accumulators for 4 columns x 4 tokens; the weights' conversion is
  // repeated per pass): 8 tokens' 32 accumulators would spill at 64 registers.
  constexpr int MH = MT < 4 ? MT : 4;
#pragma unroll
  for (int p = 0; p < MT; p += MH) {
    if (p >= g.M) break;
    float acc[kColsTn][MH] = {};
#pragma unroll
    for (int i = 0; i < KP; ++i) {
      const int k = lane * 4 + 128 * i;
      if (k >= g.K) break;
      float v[kColsTn][4];
#pragma unroll
      for (int c = 0; c < kColsTn; ++c)
#pragma unroll
        for (int j = 0; j < 4; ++j) v[c][j] = fp8_at(q[c][i], j) * s[i];
#pragma unroll
      for (int mm = 0; mm < MH; ++mm)
        if (p + mm < g.M) {
          const float4 a = *reinterpret_cast<const float4*>(&As[(p + mm) * g.K + k]);
#pragma unroll
          for (int c = 0; c < kColsTn; ++c)
            acc[c][mm] = fmaf(a.x, v[c][0], fmaf(a.y, v[c][1], fmaf(a.z, v[c][2], fmaf(a.w, v[c][3], acc[c][mm]))));
        }
    }
#pragma unroll
    for (int c = 0; c < kColsTn; ++c) {
      const int n = n0 + c;
      if (n >= g.N) break;
#pragma unroll
      for (int mm = 0; mm < MH; ++mm) {
        if (p + mm >= g.M) break;
        float v = acc[c][mm];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) C[size_t(p + mm) * g.ldc + n] = v;
      }
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
    const dim3 grid{(unsigned(g.N) + cols - 1) / cols, unsigned(g.batch)};
    if (g.K <= 512) launch_k(head_gemv_tn_kernel<MT, 4>, grid, 32 * kWarps, smem, st, g, w);
    else launch_k(head_gemv_tn_kernel<MT, kMaxKTn / 128>, grid, 32 * kWarps, smem, st, g, w);
  }
}
}  // namespace

bool launch_head_gemv(const GemmArgs& g, const WeightRef& w, cudaStream_t st) {
  if (w.type != WType::FP8 || g.M < 1 || g.M > kMaxM || g.batch < 1 || g.N < 1) return false;
  // Both kernels: float4 activations over 4 consecutive k, 4-byte weight loads, and 4 consecutive weight rows
  // in one 128-row scale block.
  if (g.K % 4 || w.cols % 4 || g.w_row0 % 4 || g.w_row_bstride % 4) return false;
  if (g.K > (g.trans_w ? kMaxKTn : kMaxKNt) || (!g.trans_w && g.N % 4)) return false;
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
