// The grouped expert GEMMs of the MoE layer: one launch for gate + up + SwiGLU over every used expert,
// one for down. At decode sizes this is weight streaming (each used expert's weights read once per
// step, not once per token), so it reuses the small-M GEMV's scheme (k_gemv.cu): a block owns 16 weight
// rows of one expert and a tile of up to 8 slots (tokens) of that expert (an expert with more tokens has
// several tiles, side by side in the grid: its weights come from L2 after the first); its 8 warps split
// K; lane (g = lane / 4, t = lane % 4) loads 16 contiguous weights of rows g and g + 8 per 64-column
// step, and 16 activations of slot g; mma.m16n8k8 in TF32 on exact weights with each activation split into
// two TF32 parts: fp32-accurate, like the CPU reference. The FP8 block scale multiplies each step.
//
// The fast mode's form (MoeGemmArgs::f16_x, FP8 weights): m16n8k16 f16 MMAs on the weights' exact f16 form
// and x scaled per 64-column step by a power of two into f16: 11 bits of x (the TF32 GEMV form's precision),
// a quarter of the MMAs and one conversion per two weights.
//
// Grid: x = tile (a host-known bound, moe_max_tiles), y = row block (16 rows; 32 for down by default,
// MoeGemmArgs::down_rows). Blocks past the tiles in use exit at once, so the launch does not depend on the
// routing. (One wave of blocks each taking a run of (tile, row block) items, the next item's weights loaded
// before this one's epilogue, measured slower: batch 1 2.80 vs 2.55 ms, batch 8 8.3 vs 6.5; at 2 blocks per
// SM 2.63 / 7.24; so were forms that staged the weights through shared memory, by bulk copies or cp.async
// rings: docs/PERF.md, sessions 18 and 20.)
// The gated kernel reads the gate and up rows of the same outputs and applies SwiGLU in its epilogue: the
// [P, I] intermediate is written once.
#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_gemm_common.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/tf32_mma.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kWarps = kMoeWarps;
constexpr int kTile = kMoeTileRows;  // one MMA column block

// One 64-column step u of a warp's loaded group: rows g, g + 8 of each matrix (wa, wb) against the 16
// activations of this lane's slot (xr: null past the tile's rows), accumulated into acc with the block scale.
template <int WT, bool F16X, int NM, int U, typename Rows>
__device__ __forceinline__ void moe_step(const Row16<WT> (&wa)[NM][U], const Row16<WT> (&wb)[NM][U], int u,
                                         const float* xr, int K, int st, int t, const Rows& R, int scale_pitch,
                                         float (&acc)[NM][4]) {
  const int k = st * 64 + 16 * t;
  float xv[16];
  load_act16(xr ? xr + k : nullptr, k < K && xr, xv);
  if constexpr (F16X) {
    float sc[NM];
#pragma unroll
    for (int mi = 0; mi < NM; ++mi) sc[mi] = R.srow(mi, scale_pitch)[(st * 64) / 128];
    moe_step_f16(wa, wb, u, xv, t, sc, acc);
  } else {
    // Independent accumulation chains (matrix x hi/lo part x parity of i), issued interleaved so that
    // no MMA waits on the previous one's result.
    float d[NM][2][2][4];
#pragma unroll
    for (int mi = 0; mi < NM; ++mi)
#pragma unroll
      for (int c = 0; c < 4; ++c)
#pragma unroll
        for (int q = 0; q < 4; ++q) d[mi][c / 2][c % 2][q] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t h0 = to_tf32(xv[2 * i]), h1 = to_tf32(xv[2 * i + 1]);
      const uint32_t l0 = to_tf32(xv[2 * i] - __uint_as_float(h0)), l1 = to_tf32(xv[2 * i + 1] - __uint_as_float(h1));
#pragma unroll
      for (int mi = 0; mi < NM; ++mi) {
        const float2 fa = wa[mi][u].pair(i), fb = wb[mi][u].pair(i);
        const uint32_t a0 = __float_as_uint(fa.x), a1 = __float_as_uint(fb.x);
        const uint32_t a2 = __float_as_uint(fa.y), a3 = __float_as_uint(fb.y);
        mma_tf32(d[mi][0][i & 1], a0, a1, a2, a3, h0, h1);
        mma_tf32(d[mi][1][i & 1], a0, a1, a2, a3, l0, l1);
      }
    }
#pragma unroll
    for (int mi = 0; mi < NM; ++mi) {
      const float sc = WT == int(WType::FP8) ? R.srow(mi, scale_pitch)[(st * 64) / 128] : 1.f;
#pragma unroll
      for (int q = 0; q < 4; ++q)
        acc[mi][q] = fmaf(sc, (d[mi][0][0][q] + d[mi][0][1][q]) + (d[mi][1][0][q] + d[mi][1][1][q]), acc[mi][q]);
    }
  }
}

// Where a block's 16 rows of one tile come from: the expert's matrices (gate, up or down), their block
// scales, this lane's activation row.
template <int WT, int NM, bool GATED, bool PAIR>
struct MoeRows {
  static constexpr int EB = WT == int(WType::FP8) ? 1 : 2;
  static constexpr int kRows = PAIR ? 32 : 16;  // rows per block: matrix slot mi of PAIR is rows 16 mi ..
  const uint8_t* base[NM];  // the expert's matrices (gate, up or down) and their block scales
  const float* sbase[NM];
  const uint8_t* w0[NM];  // row g of this row block (row g + 8 is 8 rows further, when it exists)
  int n0;
  bool ok0[NM], ok1[NM];
  __device__ __forceinline__ void set_expert(const MoeExpertPtrs& ex) {
#pragma unroll
    for (int mi = 0; mi < NM; ++mi) {
      const int mat = GATED ? mi : 2;
      base[mi] = static_cast<const uint8_t*>(ex.w[mat]);
      sbase[mi] = ex.scale[mat];
    }
  }
  __device__ __forceinline__ void set_rows(const MoeGemmArgs& a, int rb, int g) {
    n0 = rb * kRows;
#pragma unroll
    for (int mi = 0; mi < NM; ++mi) {
      const int r = n0 + (PAIR ? 16 * mi : 0);
      ok0[mi] = r + g < a.N, ok1[mi] = r + g + 8 < a.N;
      w0[mi] = base[mi] + size_t(ok0[mi] ? r + g : n0) * a.K * EB;
    }
  }
  __device__ __forceinline__ const uint8_t* w1(int mi, int K) const {
    return ok1[mi] ? w0[mi] + size_t(8) * K * EB : w0[mi];
  }
  // The block scales of this row block's 128-row scale block (kRows divides 128).
  __device__ __forceinline__ const float* srow(int mi, int scale_pitch) const {
    return WT == int(WType::FP8) ? sbase[mi] + size_t(n0 / 128) * scale_pitch : nullptr;
  }
  // The U steps of the group starting at step s0 (steps s0 + u * kWarps). stream: the GEMV's no-L1,
  // 256-byte-L2 loads (the weights, read once, do not evict the activations from L1).
  template <int U>
  __device__ __forceinline__ void load(Row16<WT> (&wa)[NM][U], Row16<WT> (&wb)[NM][U], int s0, int nsteps, int K,
                                       int t, bool stream) const {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = s0 + u * kWarps, k = st * 64 + 16 * t;
      const bool kin = st < nsteps && k < K;
#pragma unroll
      for (int mi = 0; mi < NM; ++mi) {
        if (stream) {
          wa[mi][u].load_stream(w0[mi], k, kin && ok0[mi]);
          wb[mi][u].load_stream(w1(mi, K), k, kin && ok1[mi]);
        } else {
          wa[mi][u].load(w0[mi], k, kin && ok0[mi]);
          wb[mi][u].load(w1(mi, K), k, kin && ok1[mi]);
        }
      }
    }
  }
};

// Steps loaded ahead: 128 bytes of weights in flight per lane.
template <int WT, int NM>
constexpr int kMoeStepsAhead = (NM == 2 ? 2 : 4) / (WT == int(WType::FP8) ? 1 : 2);

// KIND: 0 down (16 rows a block), 1 gate + up (16 rows of each, SwiGLU), 2 down at 32 rows a block (two
// 16-row tiles, the gated kernel's shape: one conversion of each activation step serves both).
// Blocks per SM: 3 for the f16 form (78-80 registers, no spills; more weight bytes in flight: batch 8
// 6.90 -> 6.25 ms, batch 1 -2%, docs/PERF.md); the exact form needs 112-126 registers.
template <int WT, int KIND, bool F16X>
__global__ void __launch_bounds__(kWarps * 32, F16X ? 3 : 2) moe_gemm_kernel(MoeGemmArgs a) {
  pdl_prologue();
  constexpr bool GATED = KIND == 1, PAIR = KIND == 2;
  constexpr int NM = KIND == 0 ? 1 : 2;  // weight tiles per block
  constexpr int U = kMoeStepsAhead<WT, NM>;
  __shared__ float part[NM][kWarps][16][kTile + 1];  // +1: the epilogue reads part[.][.][r][m] across r
  const int tile = blockIdx.x, rb = blockIdx.y;
  if (tile >= *a.n_tiles) return;
  const int e = a.tiles[3 * tile], slot0 = a.tiles[3 * tile + 1], rows = a.tiles[3 * tile + 2];
  const int K = a.K;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int nsteps = (K + 63) / 64;
  MoeRows<WT, NM, GATED, PAIR> R;
  R.set_expert(e == a.shared_e ? a.shared : a.experts[e]);
  R.set_rows(a, rb, g);
  // This lane's activation row: slot g of the tile (null past its rows).
  const int row = g < rows ? (a.x_row_of_slot ? a.x_row_of_slot[slot0 + g] : slot0 + g) : -1;
  const float* xr = row >= 0 ? a.x + size_t(row) * K : nullptr;
  float acc[NM][4];
#pragma unroll
  for (int mi = 0; mi < NM; ++mi) acc[mi][0] = acc[mi][1] = acc[mi][2] = acc[mi][3] = 0.f;
  for (int s0 = warp; s0 < nsteps; s0 += U * kWarps) {
    Row16<WT> wa[NM][U], wb[NM][U];
    R.template load<U>(wa, wb, s0, nsteps, K, t, a.stream_weights);
    // The group's activations toward L1 now (the tile's rows of x overflow L1 at 8 slots and more), so
    // each step's load does not add an L2 round trip after the weights arrive; no registers held.
    if (xr) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int k = (s0 + u * kWarps) * 64 + 16 * t;
        if (k < K) asm volatile("prefetch.global.L1 [%0];" ::"l"(xr + k));
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int st = s0 + u * kWarps;
      if (st >= nsteps) break;
      moe_step<WT, F16X>(wa, wb, u, xr, K, st, t, R, a.scale_pitch, acc);
    }
  }
  moe_epilogue<GATED, PAIR, 0>(part, acc, a.y, a.N, R.n0, slot0, rows);
}

template <int WT, int KIND>
void launch_typed(const MoeGemmArgs& a, cudaStream_t st) {
  const int nrb = (a.N + (KIND == 2 ? 31 : 15)) / (KIND == 2 ? 32 : 16);
  const dim3 grid{unsigned(a.max_tiles), unsigned(nrb)};
  if constexpr (WT == int(WType::FP8))
    if (a.f16_x) return launch_k(moe_gemm_kernel<WT, KIND, true>, grid, kWarps * 32, 0, st, a);
  launch_k(moe_gemm_kernel<WT, KIND, false>, grid, kWarps * 32, 0, st, a);
}
}  // namespace

void launch_moe_grouped_gemm(const MoeGemmArgs& a, bool gated, cudaStream_t st) {
  static_assert(kTile == 8, "a tile is the 8 columns of one m16n8k8 MMA");
  if (a.max_tiles == 0 || a.N == 0) return;
  const int kind = gated ? 1 : a.down_rows == 32 ? 2 : 0;
  if (a.wtype == WType::FP8) {
    if (kind == 1) launch_typed<int(WType::FP8), 1>(a, st);
    else if (kind == 2) launch_typed<int(WType::FP8), 2>(a, st);
    else launch_typed<int(WType::FP8), 0>(a, st);
  } else {
    if (kind == 1) launch_typed<int(WType::BF16), 1>(a, st);
    else if (kind == 2) launch_typed<int(WType::BF16), 2>(a, st);
    else launch_typed<int(WType::BF16), 0>(a, st);
  }
}

}  // namespace ds::backend::cuda
