// Small-M GEMM (decode, M <= 32 tokens): y = x W^T with W streamed once from HBM, fp32 activations,
// fp32-accurate results.
//
// FP8 / BF16 weights: tensor cores, mma.m16n8k8 in TF32. Both weight formats are exact in TF32 (3 / 7
// mantissa bits <= 10); each activation is split into x_hi = tf32(x) and x_lo = tf32(x - x_hi), two MMAs,
// so products keep ~22 bits of x: the result matches an fp32 dot product to rounding (the exactness the
// CPU reference needs), at tensor-core instead of FMA throughput. A warp owns R tiles of 16 weight rows;
// per step of 64 columns lane (g = lane / 4, t = lane % 4) loads 16 contiguous weights of rows g and g + 8
// of each tile (one or two 16-byte loads each) and 16 activations of token g; the K index of MMA slot c in
// MMA i is 16 * (c % 4) + 2 * i + c / 4, the same permutation for A and B, so every operand comes from
// those contiguous loads. The FP8 block scale (one per 128 rows x 128 columns) multiplies each step's
// partial. A lane loads U consecutive steps before it uses the first; at M <= 8 a warp owns two tiles
// (32 rows: each activation's TF32 split serves both) and the split is by truncation (MODE below).
// The 8 warps of a block split K; blockIdx.y splits it further, up to one wave of blocks, the last block
// of a row range summing the slices in a fixed order.
// Measured on the H200 (docs/PERF.md, gpu_bench gemv): 60-66% of the HBM ceiling on the large FP8 weights,
// ~0.9-1.0x cuBLASLt; the bound is instructions and their latency (TF32 split, FP8 -> f16 -> f32 decode,
// two MMAs per k step), not bytes in flight: more steps in flight (U = 4) or a cp.async ring measured slower.
//
// F32 weights (rare: no checkpoint ships them): lane = row SIMT kernel, M <= 8.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/tf32_mma.cuh"
#include "util/error.h"

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

// NT token tiles of 8 (M <= 8 * NT), R row tiles of 16 per warp, U consecutive 64-column steps per lane
// loaded before any is used (a warp keeps R * U KB of FP8 weights in flight; its U loads of a row are
// 64 * U contiguous bytes). Each activation's TF32 split is made once per step and serves the R tiles.
// MODE (bit flags): 2: the activation split by truncation (hi = x with its 13 low mantissa bits cleared,
// lo = (x - hi) likewise: ~21 bits of x, still fp32-accurate to rounding) instead of cvt.rna.tf32, which
// is a 4-instruction sequence on sm_90 (the FP8 default: 1.1-1.4x on the large weights); 8: plain __ldg
// weight loads instead of the no-L1 / 256-byte-L2 streaming form (better for BF16, worse for FP8).
// 16: one MMA per step on x rounded to TF32 (round half away from zero on the bits: an add and a mask), no
// lo part: ~11 bits of x instead of ~22, for the fast mode (FastPart kFastTf32Gemv), half the MMAs and no
// split arithmetic.
// Several weights of one launch (GemvGroup): blocks [end of part p-1, end of part p) of grid.x compute
// part p's rows; every part reads the same x.
struct GemvPart {
  const uint8_t* w;
  const float* scale;
  float* y;
  float* partial;
  int scale_pitch, N, block_end;
};
struct GemvParts {
  GemvPart p[kGemvMaxGroup];
  int count;
  bool early;  // early_weights(): the first step group's weights loaded before pdl_prologue
};

template <int WT, int NT, int R, int U, int MODE>
__global__ void __launch_bounds__(kWarps * 32, 2)
    gemv_tc_kernel(const float* __restrict__ x, int M, int K, const __grid_constant__ GemvParts parts,
                   int* __restrict__ counters) {
  constexpr int EB = WT == int(WType::FP8) ? 1 : 2, ROWS = 16 * R;
  __shared__ float part[kWarps][ROWS][8 * NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  int pi = 0;
  while (pi + 1 < parts.count && int(blockIdx.x) >= parts.p[pi].block_end) ++pi;
  const GemvPart& P = parts.p[pi];
  const uint8_t* __restrict__ w = P.w;
  const float* __restrict__ scale = P.scale;
  float* __restrict__ y = P.y;
  float* __restrict__ partial = P.partial;
  const int N = P.N, scale_pitch = P.scale_pitch;
  const int n0 = (int(blockIdx.x) - (pi > 0 ? parts.p[pi - 1].block_end : 0)) * ROWS;
  const int nsteps = (K + 63) / 64;
  const int slices = kWarps * gridDim.y, slice = blockIdx.y * kWarps + warp;
  const uint8_t* wr[R][2];
  bool okr[R][2];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = n0 + 16 * r + 8 * h + g;
      okr[r][h] = row < N;
      wr[r][h] = w + size_t(okr[r][h] ? row : n0) * K * EB;
    }
  // One 128-row scale block holds all ROWS rows (ROWS divides 128).
  const float* srow = scale ? scale + size_t(n0 / 128) * scale_pitch : nullptr;
  float acc[NT][R][4];
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[j][r][0] = acc[j][r][1] = acc[j][r][2] = acc[j][r][3] = 0.f;
  Row16<WT> wv[U][R][2];
  // One token tile (M <= 8): the group's activations are loaded with its weights, so their latency (L2 at
  // M = 8: 8 rows of x overflow L1) overlaps the weights' instead of following it at every step.
  constexpr bool XG = NT == 1 && U <= 2;
  float xg[XG ? U : 1][16];
  auto load_x_group = [&](int c) {
    if constexpr (XG) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int st = c * U + u, k = st * 64 + 16 * t;
        load_act16(x + size_t(g) * K + k, st < nsteps && k < K && g < M, xg[u]);
      }
    }
  };
  auto load_group = [&](int c) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = c * U + u, k = st * 64 + 16 * t;
      const bool kin = st < nsteps && k < K;
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if constexpr ((MODE & 8) != 0) wv[u][r][h].load(wr[r][h], k, kin && okr[r][h]);
          else wv[u][r][h].load_stream(wr[r][h], k, kin && okr[r][h]);
        }
    }
  };
  // Weights are read-only for the whole step: the first group's loads go out before waiting on the kernel
  // that writes x (pdl.cuh). (Also prefetching the next groups into L2 there measured slower: 2.79 vs 2.68 ms.)
  if (parts.early) load_group(slice);
  pdl_prologue();
  for (int c = slice; c * U < nsteps; c += slices) {
    if (c != slice || !parts.early) load_group(c);
    load_x_group(c);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = c * U + u, k = st * 64 + 16 * t;
      if (st >= nsteps) break;
      const bool kin = k < K;
      const float sc = WT == int(WType::FP8) ? srow[(st * 64) / 128] : 1.f;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int m = 8 * j + g;
        float xv[16];
        if constexpr (XG) {
#pragma unroll
          for (int q = 0; q < 16; ++q) xv[q] = xg[u][q];
        } else {
          load_act16(x + size_t(m) * K + k, kin && m < M, xv);
        }
        float d[R][4];
#pragma unroll
        for (int r = 0; r < R; ++r) d[r][0] = d[r][1] = d[r][2] = d[r][3] = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          uint32_t h0, h1, l0 = 0, l1 = 0;
          if constexpr ((MODE & 16) != 0) {
            h0 = (__float_as_uint(xv[2 * i]) + 0x1000u) & 0xffffe000u;
            h1 = (__float_as_uint(xv[2 * i + 1]) + 0x1000u) & 0xffffe000u;
          } else if constexpr ((MODE & 2) != 0) {
            h0 = __float_as_uint(xv[2 * i]) & 0xffffe000u, h1 = __float_as_uint(xv[2 * i + 1]) & 0xffffe000u;
            l0 = __float_as_uint(xv[2 * i] - __uint_as_float(h0)) & 0xffffe000u;
            l1 = __float_as_uint(xv[2 * i + 1] - __uint_as_float(h1)) & 0xffffe000u;
          } else {
            h0 = to_tf32(xv[2 * i]), h1 = to_tf32(xv[2 * i + 1]);
            l0 = to_tf32(xv[2 * i] - __uint_as_float(h0)), l1 = to_tf32(xv[2 * i + 1] - __uint_as_float(h1));
          }
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const float2 pa = wv[u][r][0].pair(i), pb = wv[u][r][1].pair(i);
            const uint32_t a0 = __float_as_uint(pa.x), a1 = __float_as_uint(pb.x);
            const uint32_t a2 = __float_as_uint(pa.y), a3 = __float_as_uint(pb.y);
            mma_tf32(d[r], a0, a1, a2, a3, h0, h1);
            if constexpr ((MODE & 16) == 0) mma_tf32(d[r], a0, a1, a2, a3, l0, l1);
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[j][r][e] = fmaf(sc, d[r][e], acc[j][r][e]);
      }
    }
  }
  // acc[j][r]: (row 16r + g, tokens 8j + 2t, 8j + 2t + 1), (row 16r + g + 8, the same tokens).
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      part[warp][16 * r + g][8 * j + 2 * t] = acc[j][r][0];
      part[warp][16 * r + g][8 * j + 2 * t + 1] = acc[j][r][1];
      part[warp][16 * r + g + 8][8 * j + 2 * t] = acc[j][r][2];
      part[warp][16 * r + g + 8][8 * j + 2 * t + 1] = acc[j][r][3];
    }
  __syncthreads();
  for (int idx = threadIdx.x; idx < ROWS * 8 * NT; idx += blockDim.x) {
    const int r = idx / (8 * NT), m = idx % (8 * NT), n = n0 + r;
    if (n >= N || m >= M) continue;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kWarps; ++k) s += part[k][r][m];
    if (gridDim.y == 1) y[size_t(m) * N + n] = s;
    else partial[(size_t(blockIdx.y) * M + m) * N + n] = s;
  }
  if (gridDim.y > 1 && last_slice_block(counters)) {
    for (int idx = threadIdx.x; idx < ROWS * M; idx += blockDim.x) {
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
  pdl_prologue();
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

template <int WT, int NT, int R, int U, int MODE = 0>
void launch_one(const float* x, int M, const GemvGroup& gr, float* partial, int* counters, int ky, cudaStream_t st) {
  GemvParts parts{};
  parts.count = gr.count;
  parts.early = early_weights();
  int blocks = 0;
  size_t off = 0;  // each part's K slices in `partial`, one after another
  for (int i = 0; i < gr.count; ++i) {
    const WeightRef& w = gr.w[i];
    blocks += (w.rows + 16 * R - 1) / (16 * R);
    parts.p[i] = {static_cast<const uint8_t*>(w.data), w.scale, gr.y[i], partial ? partial + off : nullptr,
                  w.scale_pitch, w.rows, blocks};
    off += size_t(ky) * M * w.rows;
  }
  const dim3 grid{unsigned(blocks), unsigned(ky)};
  launch_k(gemv_tc_kernel<WT, NT, R, U, MODE>, grid, kWarps * 32, 0, st, x, M, gr.w[0].cols, parts, counters);
}

template <int WT>
void launch_tc(const float* x, int M, const GemvGroup& w, float* partial, int* counters, int ky, cudaStream_t st,
               GemvTile t) {
  const int key = t.R * 10 + t.U;
  if (M <= 8) {
    switch (key * 100 + t.mode) {
      case 1200: return launch_one<WT, 1, 1, 2>(x, M, w, partial, counters, ky, st);
      case 1400: return launch_one<WT, 1, 1, 4>(x, M, w, partial, counters, ky, st);
      case 2200: return launch_one<WT, 1, 2, 2>(x, M, w, partial, counters, ky, st);
      case 2202: return launch_one<WT, 1, 2, 2, 2>(x, M, w, partial, counters, ky, st);
      case 1208: return launch_one<WT, 1, 1, 2, 8>(x, M, w, partial, counters, ky, st);
      case 2208: return launch_one<WT, 1, 2, 2, 8>(x, M, w, partial, counters, ky, st);
      case 2218: return launch_one<WT, 1, 2, 2, 18>(x, M, w, partial, counters, ky, st);
      case 1224: return launch_one<WT, 1, 1, 2, 24>(x, M, w, partial, counters, ky, st);
      case 2224: return launch_one<WT, 1, 2, 2, 24>(x, M, w, partial, counters, ky, st);
      case 2400:
        if constexpr (WT == int(WType::FP8)) return launch_one<WT, 1, 2, 4>(x, M, w, partial, counters, ky, st);
        break;
      case 4102:
        if constexpr (WT == int(WType::FP8)) return launch_one<WT, 1, 4, 1, 2>(x, M, w, partial, counters, ky, st);
        break;
      case 4118:
        if constexpr (WT == int(WType::FP8)) return launch_one<WT, 1, 4, 1, 18>(x, M, w, partial, counters, ky, st);
        break;
      default: break;
    }
  } else if (M <= 16) {
    if (key == 12) return launch_one<WT, 2, 1, 2>(x, M, w, partial, counters, ky, st);
  } else if (key == 12) {
    return launch_one<WT, 4, 1, 2>(x, M, w, partial, counters, ky, st);
  }
  fail("gemv: no kernel for M = {} with {} row tiles x {} steps, mode {}", M, t.R, t.U, t.mode);
}

void launch_f32(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                cudaStream_t st) {
  dim3 grid(unsigned((w.rows + 31) / 32), unsigned(ky));
  const float* wd = static_cast<const float*>(w.data);
  if (M <= 2) launch_k(gemv_f32_kernel<2>, grid, kWarps * 32, 0, st, x, M, w.cols, wd, w.rows, y, partial, counters);
  else launch_k(gemv_f32_kernel<8>, grid, kWarps * 32, 0, st, x, M, w.cols, wd, w.rows, y, partial, counters);
}
}  // namespace

int gemv_max_m(const WeightRef& w) { return w.type == WType::F32 ? 8 : kGemvMaxM; }

bool gemv_supported(const WeightRef& w) {
  const int e = w.type == WType::F32 ? 4 : 16;
  return w.cols > 0 && w.cols % e == 0 && (reinterpret_cast<uintptr_t>(w.data) % 16) == 0 &&
         (w.type != WType::FP8 || w.scale != nullptr);
}


GemvTile gemv_tile(const WeightRef& w, int M, GemvTile t) {
  if (t.R > 0) return t;
  // FP8 at 4-8 tokens: four row tiles a warp and one step a group (64 rows a block): each activation step,
  // loaded from L2 by every block (8 tokens of o_proj's x are 512 KB), serves 64 weight rows instead of 32,
  // half the activation bytes per weight byte (batch 8 5.820 vs 5.864 ms, docs/PERF.md).
  if (M >= 4 && M <= 8 && w.type == WType::FP8) return {4, 1, 2};
  if (w.type == WType::F32) return {2, 1};  // 32 rows per block, one 16-column step per lane
  // Measured best on the H200 (docs/PERF.md): FP8 two row tiles, truncation split, streaming loads; BF16
  // plain loads, two row tiles for lm_head, one for the small router / indexer head weights.
  // (Three steps a group for K of 1,025-1,536, q_b and the indexer's wq_b, so that each of a block's 8 warps
  // has one group instead of some two: no change, 17.9 vs 18.0 us at batch 1, 21.1 vs 21.6 at 8; dropped.)
  if (M <= 8 && w.type == WType::FP8) return {2, 2, 2};
  if (M <= 8) return w.rows >= 4096 ? GemvTile{2, 2, 8} : GemvTile{1, 2, 8};
  return {1, 2};  // more tokens: more accumulators, one row tile (two spill registers)
}

int gemv_ksplit(const WeightRef& w, int M, int num_sms, GemvTile tile) {
  GemvGroup g;
  g.w[0] = w;
  g.count = 1;
  return gemv_ksplit(g, M, num_sms, tile);
}

int gemv_ksplit(const GemvGroup& gr, int M, int num_sms, GemvTile tile) {
  // At most one wave of blocks (two per SM: the kernels' launch bounds; a partial second wave measured
  // slower), unless that leaves a warp less than one step group of U steps.
  const WeightRef& w = gr.w[0];
  const GemvTile t = gemv_tile(w, M, tile);
  const int rows_per_block = w.type == WType::F32 ? 32 : 16 * t.R;
  int64_t blocks = 0;
  for (int i = 0; i < gr.count; ++i) blocks += (gr.w[i].rows + rows_per_block - 1) / rows_per_block;
  const int64_t groups = w.type == WType::F32 ? (w.cols + 15) / 16 : ((w.cols + 63) / 64 + t.U - 1) / t.U;
  if (blocks > kGemvMaxCounters) return 1;
  int64_t ky = int64_t(num_sms) * 2 / blocks;
  ky = std::min<int64_t>(ky, std::max<int64_t>(1, groups / kWarps));
  return int(std::max<int64_t>(1, std::min<int64_t>(ky, 16)));
}

void launch_gemv(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                 cudaStream_t st, GemvTile tile) {
  if (w.type == WType::F32) return launch_f32(x, M, w, y, partial, counters, ky, st);
  GemvGroup g;
  g.w[0] = w;
  g.y[0] = y;
  g.count = 1;
  launch_gemv_group(x, M, g, partial, counters, ky, st, tile);
}

bool gemv_groupable(const GemvGroup& g, int M) {
  if (g.count < 1 || g.count > kGemvMaxGroup || g.w[0].type == WType::F32) return false;
  const GemvTile t = gemv_tile(g.w[0], M);
  for (int i = 0; i < g.count; ++i) {
    const WeightRef& w = g.w[i];
    const GemvTile ti = gemv_tile(w, M);
    if (!gemv_supported(w) || w.type != g.w[0].type || w.cols != g.w[0].cols || ti.R != t.R || ti.U != t.U ||
        ti.mode != t.mode || M > gemv_max_m(w))
      return false;
  }
  return true;
}

void launch_gemv_group(const float* x, int M, const GemvGroup& g, float* partial, int* counters, int ky,
                       cudaStream_t st, GemvTile tile) {
  DS_CHECK(g.count >= 1 && g.count <= kGemvMaxGroup && g.w[0].type != WType::F32, "gemv group of {} weights", g.count);
  const GemvTile t = gemv_tile(g.w[0], M, tile);
  switch (g.w[0].type) {
    case WType::FP8: launch_tc<int(WType::FP8)>(x, M, g, partial, counters, ky, st, t); break;
    case WType::BF16: launch_tc<int(WType::BF16)>(x, M, g, partial, counters, ky, st, t); break;
    case WType::F32: break;
  }
}

}  // namespace ds::backend::cuda
