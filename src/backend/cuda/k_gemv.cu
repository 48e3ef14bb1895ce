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
// partial. A lane loads U consecutive steps before it uses the first (at M <= 8, FP8: 2 tiles x 4 steps,
// 8 KB per warp in flight: enough bytes in flight per SM to reach HBM bandwidth with 16 warps per SM).
// The 8 warps of a block split K; blockIdx.y splits it further so that one wave of blocks fills the GPU,
// the last block of a row range summing the slices in a fixed order.
//
// F32 weights (rare: no checkpoint ships them): lane = row SIMT kernel, M <= 8.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/tf32_mma.cuh"
#include "util/error.h"

namespace ds::backend::cuda {

namespace {
constexpr int kWarps = 8;

// K slices: every block of a row range writes its partial sums; the last of them to finish (counted in
// counters[blockIdx.x], reset for the next launch) adds the slices in a fixed order: one launch, and
// the same result whichever block finishes last.
__device__ bool last_slice_block(int* counters, bool& last) {  // `last`: a shared flag
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
__device__ bool last_slice_block(int* counters) {
  __shared__ bool last;
  return last_slice_block(counters, last);
}
__device__ __forceinline__ float sum_slices(const float* partial, size_t MN, size_t i) {
  float s = 0.f;
  for (unsigned k = 0; k < gridDim.y; ++k) s += __ldcg(partial + k * MN + i);  // L2: other SMs wrote them
  return s;
}

// NT token tiles of 8 (M <= 8 * NT), R row tiles of 16 per warp, U consecutive 64-column steps per lane
// loaded before any is used (a warp keeps R * U KB of FP8 weights in flight; its U loads of a row are
// 64 * U contiguous bytes). Each activation's TF32 split is made once per step and serves the R tiles.
// MODE (bit flags; 0 is the production form, the others exist for gpu_bench's experiments):
//   1: FP8 decoded by integer ops + one FMUL (exact, subnormals included) instead of the e4m3 -> f16 -> f32
//      conversions; 2: the activation split by truncation (mask, subtract, mask) instead of cvt.rna.tf32;
//   4: no FP8 decode at all (wrong results: timing only); 8: plain __ldg weight loads; 16: x_hi only (one
//   MMA per k step: TF32 activations).
template <int MODE>
__device__ __forceinline__ float fp8_at(uint32_t word, int p) {  // byte p of word, e4m3 -> float exactly
  // Byte p to bits 27..20 with its sign copied up to bit 31: sign | 0000 | eeee mmm -> an f32 whose
  // exponent field is e and mantissa m << 20; 2^120 rebiases it (e4m3 subnormals are f32 denormals here:
  // FMUL keeps them, -ftz=false).
  const uint32_t b = uint32_t(int32_t(word << (24 - 8 * p)) >> 4) & 0x87F00000u;
  return __uint_as_float(b) * 0x1p120f;
}

template <int WT, int NT, int R, int U, int MODE>
__global__ void __launch_bounds__(kWarps * 32, 2)
    gemv_tc_kernel(const float* __restrict__ x, int M, int K, const uint8_t* __restrict__ w,
                   const float* __restrict__ scale, int scale_pitch, int N, float* __restrict__ y,
                   float* __restrict__ partial, int* __restrict__ counters) {
  constexpr int EB = WT == int(WType::FP8) ? 1 : 2, ROWS = 16 * R;
  __shared__ float part[kWarps][ROWS][8 * NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * ROWS;
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
  for (int c = slice; c * U < nsteps; c += slices) {
    Row16<WT> wv[U][R][2];
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
        load_act16(x + size_t(m) * K + k, kin && m < M, xv);
        float d[R][4];
#pragma unroll
        for (int r = 0; r < R; ++r) d[r][0] = d[r][1] = d[r][2] = d[r][3] = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          uint32_t h0, h1, l0, l1;
          if constexpr ((MODE & 2) != 0) {
            h0 = __float_as_uint(xv[2 * i]) & 0xffffe000u, h1 = __float_as_uint(xv[2 * i + 1]) & 0xffffe000u;
            l0 = __float_as_uint(xv[2 * i] - __uint_as_float(h0)) & 0xffffe000u;
            l1 = __float_as_uint(xv[2 * i + 1] - __uint_as_float(h1)) & 0xffffe000u;
          } else {
            h0 = to_tf32(xv[2 * i]), h1 = to_tf32(xv[2 * i + 1]);
            l0 = to_tf32(xv[2 * i] - __uint_as_float(h0)), l1 = to_tf32(xv[2 * i + 1] - __uint_as_float(h1));
          }
#pragma unroll
          for (int r = 0; r < R; ++r) {
            uint32_t a0, a1, a2, a3;
            if constexpr (WT == int(WType::FP8) && (MODE & 4) != 0) {
              a0 = wv[u][r][0].v[0].x, a1 = wv[u][r][1].v[0].y, a2 = wv[u][r][0].v[0].z, a3 = wv[u][r][1].v[0].w;
            } else if constexpr (WT == int(WType::FP8) && (MODE & 1) != 0) {
              const uint32_t wa = reinterpret_cast<const uint32_t*>(&wv[u][r][0].v[0])[i / 2];
              const uint32_t wb = reinterpret_cast<const uint32_t*>(&wv[u][r][1].v[0])[i / 2];
              a0 = __float_as_uint(fp8_at<MODE>(wa, 2 * (i % 2))), a2 = __float_as_uint(fp8_at<MODE>(wa, 2 * (i % 2) + 1));
              a1 = __float_as_uint(fp8_at<MODE>(wb, 2 * (i % 2))), a3 = __float_as_uint(fp8_at<MODE>(wb, 2 * (i % 2) + 1));
            } else {
              const float2 pa = wv[u][r][0].pair(i), pb = wv[u][r][1].pair(i);
              a0 = __float_as_uint(pa.x), a1 = __float_as_uint(pb.x);
              a2 = __float_as_uint(pa.y), a3 = __float_as_uint(pb.y);
            }
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

// M <= 8, the pipelined form: the same MMA mapping, with every global read (weights and activations) a
// 16-byte cp.async into a per-warp ring of S stages in shared memory, S - 1 steps ahead of the step being
// computed, so a warp's next loads are in flight while it computes (the register form above waits for
// each group of loads, then computes with nothing in flight). Lanes copy and read back only their own
// slots (no barrier). 4 warps per block, 4 blocks per SM; the activation split by truncation (hi = x with
// 13 mantissa bits cleared, lo = (x - hi) likewise: ~21 bits of x, still fp32-accurate to rounding); four
// independent MMA accumulators per tile (hi / lo x even / odd k slots) so MMAs do not wait on each other.
constexpr int kPipeWarps = 4, kPipeBlocksPerSm = 4;

__device__ __forceinline__ void cp_async16(uint32_t smem, const void* src, bool ok) {
  // src-size 0: the 16 bytes are zero-filled and nothing is read.
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

template <int WT, int R, int S>
__global__ void __launch_bounds__(kPipeWarps * 32, kPipeBlocksPerSm)
    gemv_pipe_kernel(const float* __restrict__ x, int M, int K, const uint8_t* __restrict__ w,
                     const float* __restrict__ scale, int scale_pitch, int N, float* __restrict__ y,
                     float* __restrict__ partial, int* __restrict__ counters) {
  constexpr int EB = WT == int(WType::FP8) ? 1 : 2, ROWS = 16 * R;
  constexpr int LPR = Row16<WT>::loads;            // 16-byte chunks of a row per lane per step
  constexpr int WCH = R * 2 * LPR, CH = WCH + 4;   // chunks per lane per step: weights, then 16 activations
  constexpr int STAGE = CH * 32 * 16;              // bytes of one stage of one warp
  static_assert(kPipeWarps * S * STAGE <= 48 * 1024, "static shared memory");
  static_assert(kPipeWarps * ROWS * 8 * 4 + 4 <= kPipeWarps * S * STAGE, "the reduction reuses the ring");
  __shared__ __align__(16) uint8_t ring[kPipeWarps * S * STAGE];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * ROWS;
  const int nsteps = (K + 63) / 64;
  const int slices = kPipeWarps * gridDim.y, slice = blockIdx.y * kPipeWarps + warp;
  const int nmine = slice < nsteps ? (nsteps - 1 - slice) / slices + 1 : 0;  // steps slice, slice + slices, ...
  const uint8_t* wr[R][2];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = n0 + 16 * r + 8 * h + g;
      wr[r][h] = w + size_t(row < N ? row : n0) * K * EB;  // rows past N read row n0; never stored
    }
  const float* xr = x + size_t(g < M ? g : 0) * K;
  const uint32_t ring0 = uint32_t(__cvta_generic_to_shared(ring)) + uint32_t(warp * S * STAGE + lane * 16);
  auto issue = [&](int j, int stage) {
    const int st = slice + j * slices, k = st * 64 + 16 * t;
    const bool kin = j < nmine && k < K;
    const int kc = kin ? k : 0;
    const uint32_t base = ring0 + uint32_t(stage * STAGE);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int l = 0; l < LPR; ++l)
          cp_async16(base + uint32_t(((r * 2 + h) * LPR + l) * 512), wr[r][h] + size_t(kc) * EB + 16 * l, kin);
#pragma unroll
    for (int q = 0; q < 4; ++q) cp_async16(base + uint32_t((WCH + q) * 512), xr + kc + 4 * q, kin && g < M);
    cp_async_commit();
  };
  const float* srow = scale ? scale + size_t(n0 / 128) * scale_pitch : nullptr;
  float acc[R][4];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
#pragma unroll
  for (int j = 0; j < S - 1; ++j) issue(j, j);
  int stage = 0;
  for (int j = 0; j < nmine; ++j) {
    issue(j + S - 1, stage == 0 ? S - 1 : stage - 1);  // into the stage read one step ago (empty past the end)
    cp_async_wait<S - 1>();                            // step j's group has landed
    const uint8_t* sp = ring + warp * S * STAGE + stage * STAGE + lane * 16;
    Row16<WT> wv[R][2];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int l = 0; l < LPR; ++l) wv[r][h].v[l] = *reinterpret_cast<const uint4*>(sp + ((r * 2 + h) * LPR + l) * 512);
    float xv[16];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float4 v = *reinterpret_cast<const float4*>(sp + (WCH + q) * 512);
      xv[4 * q] = v.x, xv[4 * q + 1] = v.y, xv[4 * q + 2] = v.z, xv[4 * q + 3] = v.w;
    }
    float d[R][4][4];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) d[r][c][0] = d[r][c][1] = d[r][c][2] = d[r][c][3] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t h0 = __float_as_uint(xv[2 * i]) & 0xffffe000u, h1 = __float_as_uint(xv[2 * i + 1]) & 0xffffe000u;
      const uint32_t l0 = __float_as_uint(xv[2 * i] - __uint_as_float(h0)) & 0xffffe000u;
      const uint32_t l1 = __float_as_uint(xv[2 * i + 1] - __uint_as_float(h1)) & 0xffffe000u;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float2 pa = wv[r][0].pair(i), pb = wv[r][1].pair(i);
        const uint32_t a0 = __float_as_uint(pa.x), a1 = __float_as_uint(pb.x);
        const uint32_t a2 = __float_as_uint(pa.y), a3 = __float_as_uint(pb.y);
        mma_tf32(d[r][2 * (i & 1)], a0, a1, a2, a3, h0, h1);
        mma_tf32(d[r][2 * (i & 1) + 1], a0, a1, a2, a3, l0, l1);
      }
    }
    const int st = slice + j * slices;
    const float sc = WT == int(WType::FP8) ? srow[(st * 64) / 128] : 1.f;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        acc[r][e] = fmaf(sc, (d[r][0][e] + d[r][1][e]) + (d[r][2][e] + d[r][3][e]), acc[r][e]);
    stage = stage == S - 1 ? 0 : stage + 1;
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the ring: it now holds the per-warp partial sums
  float(*part)[ROWS][8] = reinterpret_cast<float(*)[ROWS][8]>(ring);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    part[warp][16 * r + g][2 * t] = acc[r][0];
    part[warp][16 * r + g][2 * t + 1] = acc[r][1];
    part[warp][16 * r + g + 8][2 * t] = acc[r][2];
    part[warp][16 * r + g + 8][2 * t + 1] = acc[r][3];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < ROWS * 8; idx += blockDim.x) {
    const int r = idx / 8, m = idx % 8, n = n0 + r;
    if (n >= N || m >= M) continue;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kPipeWarps; ++k) s += part[k][r][m];
    if (gridDim.y == 1) y[size_t(m) * N + n] = s;
    else partial[(size_t(blockIdx.y) * M + m) * N + n] = s;
  }
  // The flag lives in the ring past the partial sums (static shared memory stays within 48 KB).
  if (gridDim.y > 1 && last_slice_block(counters, *reinterpret_cast<bool*>(ring + kPipeWarps * ROWS * 8 * 4))) {
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
void launch_one(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                cudaStream_t st) {
  const dim3 grid(unsigned((w.rows + 16 * R - 1) / (16 * R)), unsigned(ky));
  gemv_tc_kernel<WT, NT, R, U, MODE><<<grid, kWarps * 32, 0, st>>>(x, M, w.cols, static_cast<const uint8_t*>(w.data), w.scale,
                                                             w.scale_pitch, w.rows, y, partial, counters);
}

template <int WT, int R, int S>
void launch_pipe(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                 cudaStream_t st) {
  const dim3 grid(unsigned((w.rows + 16 * R - 1) / (16 * R)), unsigned(ky));
  gemv_pipe_kernel<WT, R, S><<<grid, kPipeWarps * 32, 0, st>>>(x, M, w.cols, static_cast<const uint8_t*>(w.data),
                                                               w.scale, w.scale_pitch, w.rows, y, partial, counters);
}

template <int WT>
void launch_tc(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
               cudaStream_t st, GemvTile t) {
  const int key = t.R * 10 + t.U;
  if (M <= 8 && t.stages > 0) {
    if constexpr (WT == int(WType::FP8)) {
      if (t.R == 2 && t.stages == 3) return launch_pipe<WT, 2, 3>(x, M, w, y, partial, counters, ky, st);
      if (t.R == 1 && t.stages == 4) return launch_pipe<WT, 1, 4>(x, M, w, y, partial, counters, ky, st);
    } else {
      if (t.R == 1 && t.stages == 3) return launch_pipe<WT, 1, 3>(x, M, w, y, partial, counters, ky, st);
    }
    fail("gemv: no pipelined kernel with {} row tiles x {} stages", t.R, t.stages);
  }
  if (M <= 8 && t.mode != 0) {  // gpu_bench's experiments
    if constexpr (WT == int(WType::FP8)) {
      switch (key * 100 + t.mode) {
        case 2201: return launch_one<WT, 1, 2, 2, 1>(x, M, w, y, partial, counters, ky, st);
        case 2202: return launch_one<WT, 1, 2, 2, 2>(x, M, w, y, partial, counters, ky, st);
        case 2203: return launch_one<WT, 1, 2, 2, 3>(x, M, w, y, partial, counters, ky, st);
        case 2204: return launch_one<WT, 1, 2, 2, 4>(x, M, w, y, partial, counters, ky, st);
        case 2209: return launch_one<WT, 1, 2, 2, 9>(x, M, w, y, partial, counters, ky, st);
        case 2219: return launch_one<WT, 1, 2, 2, 19>(x, M, w, y, partial, counters, ky, st);
        case 2401: return launch_one<WT, 1, 2, 4, 1>(x, M, w, y, partial, counters, ky, st);
        case 2403: return launch_one<WT, 1, 2, 4, 3>(x, M, w, y, partial, counters, ky, st);
        case 1401: return launch_one<WT, 1, 1, 4, 1>(x, M, w, y, partial, counters, ky, st);
        default: break;
      }
    } else {
      switch (key * 100 + t.mode) {
        case 1208: return launch_one<WT, 1, 1, 2, 8>(x, M, w, y, partial, counters, ky, st);
        case 2208: return launch_one<WT, 1, 2, 2, 8>(x, M, w, y, partial, counters, ky, st);
        case 2202: return launch_one<WT, 1, 2, 2, 2>(x, M, w, y, partial, counters, ky, st);
        default: break;
      }
    }
    fail("gemv: no experiment kernel {}x{} mode {}", t.R, t.U, t.mode);
  }
  if (M <= 8) {
    switch (key) {
      case 12: return launch_one<WT, 1, 1, 2>(x, M, w, y, partial, counters, ky, st);
      case 14: return launch_one<WT, 1, 1, 4>(x, M, w, y, partial, counters, ky, st);
      case 22: return launch_one<WT, 1, 2, 2>(x, M, w, y, partial, counters, ky, st);
      case 24:
        if constexpr (WT == int(WType::FP8)) return launch_one<WT, 1, 2, 4>(x, M, w, y, partial, counters, ky, st);
        break;
      default: break;
    }
  } else if (M <= 16) {
    if (key == 12) return launch_one<WT, 2, 1, 2>(x, M, w, y, partial, counters, ky, st);
  } else if (key == 12) {
    return launch_one<WT, 4, 1, 2>(x, M, w, y, partial, counters, ky, st);
  }
  fail("gemv: no kernel for M = {} with {} row tiles x {} steps", M, t.R, t.U);
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

GemvTile gemv_tile(const WeightRef& w, int M, GemvTile t) {
  if (t.R > 0) return t;
  if (w.type == WType::F32) return {2, 1};  // 32 rows per block, one 16-column step per lane
  if (M <= 8) return w.type == WType::FP8 ? GemvTile{2, 0, 0, 3} : GemvTile{1, 0, 0, 3};
  return {1, 2};  // more tokens: more accumulators, one row tile (two spill registers)
}

int gemv_ksplit(const WeightRef& w, int M, int num_sms, GemvTile tile) {
  // One full wave of blocks (as many per SM as the kernels' launch bounds promise), unless that leaves a
  // warp less than two steps (the pipelined kernel) or one step group of U steps (the register kernel).
  const GemvTile t = gemv_tile(w, M, tile);
  const bool pipe = t.stages > 0 && w.type != WType::F32;
  const int rows_per_block = 16 * t.R, warps = pipe ? kPipeWarps : kWarps;
  const int64_t blocks = (w.rows + rows_per_block - 1) / rows_per_block;
  const int64_t groups = w.type == WType::F32 ? (w.cols + 15) / 16
                         : pipe                ? (w.cols + 63) / 64 / 2
                                               : ((w.cols + 63) / 64 + t.U - 1) / t.U;
  if (blocks > kGemvMaxCounters) return 1;
  int64_t ky = int64_t(num_sms) * (pipe ? kPipeBlocksPerSm : 2) / blocks;  // at most one wave
  ky = std::min<int64_t>(ky, std::max<int64_t>(1, groups / warps));
  return int(std::max<int64_t>(1, std::min<int64_t>(ky, 16)));
}

void launch_gemv(const float* x, int M, const WeightRef& w, float* y, float* partial, int* counters, int ky,
                 cudaStream_t st, GemvTile tile) {
  const GemvTile t = gemv_tile(w, M, tile);
  switch (w.type) {
    case WType::FP8: launch_tc<int(WType::FP8)>(x, M, w, y, partial, counters, ky, st, t); break;
    case WType::BF16: launch_tc<int(WType::BF16)>(x, M, w, y, partial, counters, ky, st, t); break;
    case WType::F32: launch_f32(x, M, w, y, partial, counters, ky, st); break;
  }
}

}  // namespace ds::backend::cuda
