// The fast mode's grouped FP8 expert GEMMs for large batches (cuda_moe_fp8.cpp runs them): gate+up with
// SwiGLU and FP8 requantisation in the epilogue, then down. Hopper wgmma (m64n128k32, e4m3 x e4m3, fp32
// accumulators) on operands in 128-byte-swizzled shared memory (wgmma_fp8.cuh).
//
// A block owns one tile of 64 rows of one expert (padded rows, MoeLists with tile_slot0). A warpgroup
// computes 64 rows x 128 weight rows (one wgmma N). Gated: two warpgroups, the gate and up rows of 128
// intermediate columns (one block then sees the 128 columns of each SwiGLU output's scale block):
// warpgroup w takes gate and up rows n0 + 64w + [0, 64) as its 128 (gate in accumulator columns 0..63,
// up in 64..127, so a thread holds both factors of its outputs). Down: one warpgroup, 128 output
// columns, two blocks per SM (one's pipeline fill and epilogue overlap the other's K loop).
//
// Each warpgroup runs its own pipeline (its own copy of the A rows, its own named barrier): the two drift
// out of phase, so one's tensor-core work overlaps the other's scale folding and waits (the role of
// DeepGEMM's two math warpgroups; here without a producer warp: every thread issues cp.async). K loop
// over 128-column blocks (one weight scale block, one activation scale per row): the warpgroup copies
// block kb + 3 into a ring of 4 stages (A rows gathered through row_token for gate+up, its weight rows,
// the row and weight scales), issues 4 wgmmas into a temporary accumulator, waits, and folds it into the
// fp32 accumulator x row scale x weight scale (block-scale dequantisation; folding every 128 products
// also bounds the FP8 tensor cores' reduced-precision accumulation). Folding the previous block while the
// next one runs in the same warpgroup made ptxas serialise the wgmmas (C7514), hence the two warpgroups.
//
// Grid: x = 128-column block, y = tile (a host-known bound: moe_max_tiles); blocks past the tiles in use exit
// at once, so the launch does not depend on the routing. x fastest: the column blocks of a tile, then the
// next tile of the same expert, run together and share the expert's weights through L2.
#include <atomic>

#include "backend/cuda/fp8_act.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/per_device.h"
#include "backend/cuda/wgmma_fp8.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kBM = kMoeFp8TileRows;  // rows per tile: one wgmma M
constexpr int kBK = 128;               // K per stage: one scale block, one 128-byte swizzled row
constexpr int kWN = 128;               // weight rows per warpgroup (wgmma N)
constexpr int kStages = 4;
constexpr int kAhead = kStages - 1;  // blocks in flight
constexpr int kABytes = kBM * kBK, kBBytes = kWN * kBK, kWgStageBytes = kABytes + kBBytes;
constexpr int kScaleFloats = 80;  // per stage and warpgroup: kBM row scales, 2 weight scales (padded)
// Warpgroups per block: gated 2 (one SwiGLU scale block of 128 columns), down 1 (two blocks per SM, so
// that one's pipeline fill and epilogue overlap the other's K loop).
template <bool GATED>
constexpr int kWarpgroups = GATED ? 2 : 1;
template <bool GATED>
constexpr size_t kSmemBytes = 1024 + size_t(kStages) * kWarpgroups<GATED> * kWgStageBytes +
                              size_t(kStages) * kWarpgroups<GATED> * kScaleFloats * 4 +
                              size_t(kWarpgroups<GATED>) * kBM * 4;
static_assert(kSmemBytes<true> <= 227 * 1024 && 2 * (kSmemBytes<false> + 1024) <= 228 * 1024, "shared memory");
static_assert(kBM == 64 && kBM + 2 <= kScaleFloats, "one wgmma M per tile");
static_assert(kWarpgroups<true> == 2, "the gated epilogue pairs two warpgroups");

// A barrier of the 128 threads of warpgroup wg (barrier 0 is __syncthreads; immediate ids, so that
// ptxas reserves only the barriers used).
template <int NWG>
__device__ __forceinline__ void warpgroup_barrier(int wg) {
  if constexpr (NWG == 1) __syncthreads();
  else if (wg == 0) asm volatile("bar.sync 1, 128;\n" ::: "memory");
  else asm volatile("bar.sync 2, 128;\n" ::: "memory");
}

template <bool GATED>
__global__ void __launch_bounds__(128 * kWarpgroups<GATED>, GATED ? 1 : 2) moe_fp8_gemm_kernel(const MoeFp8GemmArgs a) {
  pdl_prologue();
  constexpr int kWGs = kWarpgroups<GATED>, kBN = kWN * kWGs;  // weight rows per block
  extern __shared__ uint8_t smem_raw[];
  const int tile = blockIdx.y;
  if (tile >= *a.n_tiles) return;
  const int tid = threadIdx.x, wg = tid / 128, wt = tid % 128, warp = wt / 32, lane = tid % 32, g = lane / 4,
            t = lane % 4;
  // Stage s of warpgroup w at base + (s * kWGs + w) * kWgStageBytes: A [64 x 128], then B [128 x 128].
  const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023u) & ~1023u;  // the swizzle needs 1024-byte tiles
  const uint32_t scale_off = kStages * kWGs * kWgStageBytes;
  float* const s_scale = reinterpret_cast<float*>(smem_raw + (base - raw) + scale_off);  // [stage][wg][80]
  float* const s_amax = s_scale + kStages * kWGs * kScaleFloats;                        // [kWGs][kBM]

  const int e = a.tiles[3 * tile], row0 = a.tiles[3 * tile + 1], rows = a.tiles[3 * tile + 2];
  const MoeExpertPtrs& ex = a.experts[e];
  const int K = a.K, N = a.N, nk = K / kBK;
  const int n0 = blockIdx.x * (GATED ? 128 : kBN);  // gated: intermediate columns; down: output columns

  // Copies: thread wt of the warpgroup moves 16-byte chunk lc of its rows lr + 16 i (A: i < 4, B: i < 8)
  // and at most one scale.
  const int lc = wt % 8, lr = wt / 8;
  const uint8_t* a_src[4];
  bool a_ok[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = row0 + lr + 16 * i;
    const int src = GATED ? a.row_token[r] : r;  // gated: the token's row of x (-1: a padding row, zeros)
    a_ok[i] = src >= 0;
    a_src[i] = a.a + size_t(a_ok[i] ? src : 0) * K + lc * 16;
  }
  // Weight row of B row lr + 16 i: gated, gate (i < 4) or up row n0 + 64 wg + 16 (i % 4) + lr; down,
  // row n0 + 128 wg + 16 i + lr.
  const uint8_t* w_src[2];
  bool w_ok[8];
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const int wrow = GATED ? n0 + 64 * wg + lr : min(n0 + kWN * wg + lr, N - 1);
    w_src[m] = static_cast<const uint8_t*>(ex.w[GATED ? m : 2]) + size_t(wrow) * K + lc * 16;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) w_ok[i] = GATED || n0 + kWN * wg + 16 * i + lr < N;
  const float* sc_src = nullptr;  // wt < kBM: row wt's scales; kBM (+ 1): the weight scale(s)
  int sc_kstride = 1;
  bool sc_ok = false;
  if (wt < kBM) {
    const int src = GATED ? a.row_token[row0 + wt] : row0 + wt;
    sc_ok = src >= 0;
    sc_src = a.a_scale + (sc_ok ? src : 0);
    sc_kstride = a.a_scale_pitch;
  } else if (wt < kBM + (GATED ? 2 : 1)) {
    const int m = wt - kBM;  // gated: 0 gate, 1 up (the warpgroup's rows share one 128-row scale block)
    const int nrow = GATED ? n0 : n0 + kWN * wg;
    sc_ok = nrow < N;
    sc_src = ex.scale[GATED ? m : 2] + size_t(sc_ok ? nrow / 128 : 0) * a.scale_pitch;
  }
  auto load = [&](int kb, int slot) {
    const uint32_t sa = base + (slot * kWGs + wg) * kWgStageBytes, sb = sa + kABytes;
    const size_t koff = size_t(kb) * kBK;
    const uint32_t chunk = (lc ^ (lr & 7)) << 4;  // rows lr + 16 i: the same row % 8
#pragma unroll
    for (int i = 0; i < 4; ++i) cp_async16(sa + (lr + 16 * i) * 128 + chunk, a_src[i] + koff, a_ok[i]);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int m = GATED ? i / 4 : 0;
      const int roff = GATED ? 16 * (i % 4) : 16 * i;
      cp_async16(sb + (lr + 16 * i) * 128 + chunk, w_src[m] + size_t(w_ok[i] ? roff : 0) * K + koff, w_ok[i]);
    }
    if (sc_src)
      cp_async4(base + scale_off + ((slot * kWGs + wg) * kScaleFloats + wt) * 4, sc_src + size_t(kb) * sc_kstride,
                sc_ok);
  };

  float acc[64], tmp[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = tmp[i] = 0.f;
#pragma unroll 1
  for (int s = 0; s < kAhead; ++s) {
    if (s < nk) load(s, s);
    cp_async_commit();
  }
#pragma unroll 1
  for (int kb = 0; kb < nk; ++kb) {
    const int slot = kb % kStages;
    cp_async_wait<kAhead - 1>();  // this thread's copies of block kb landed
    fence_proxy_async_smem();     // ... visible to the tensor cores
    warpgroup_barrier<kWGs>(wg);  // ... and everyone's; block kb - 1's stage is free (its wgmmas waited)
    if (kb + kAhead < nk) load(kb + kAhead, (kb + kAhead) % kStages);
    cp_async_commit();  // always: the wait above counts groups
    const uint32_t sa = base + (slot * kWGs + wg) * kWgStageBytes, sb = sa + kABytes;
    reg_fence(tmp);
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < kBK / 32; ++j)
      wgmma_m64n128k32_e4m3(tmp, wgmma_desc_sw128(sa + 32 * j), wgmma_desc_sw128(sb + 32 * j), j);
    wgmma_commit();
    reg_fence(tmp);
    wgmma_wait<0>();
    reg_fence(tmp);
    // acc += tmp x row scale x weight scale (rows 16 warp + g and + 8; gated: the up scale from column 64).
    const float* sc = s_scale + (slot * kWGs + wg) * kScaleFloats;
    const float sa0 = sc[16 * warp + g], sa1 = sc[16 * warp + g + 8];
    const float sb0 = sc[kBM], sb1 = sc[kBM + (GATED ? 1 : 0)];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const float sb = j < 8 ? sb0 : sb1, f0 = sa0 * sb, f1 = sa1 * sb;
      acc[4 * j] = fmaf(tmp[4 * j], f0, acc[4 * j]);
      acc[4 * j + 1] = fmaf(tmp[4 * j + 1], f0, acc[4 * j + 1]);
      acc[4 * j + 2] = fmaf(tmp[4 * j + 2], f1, acc[4 * j + 2]);
      acc[4 * j + 3] = fmaf(tmp[4 * j + 3], f1, acc[4 * j + 3]);
    }
  }
  cp_async_wait<0>();  // only empty groups are left; leave none in flight at exit

  const int r0 = 16 * warp + g, r1 = r0 + 8;  // this thread's rows in the tile
  if constexpr (GATED) {
    // SwiGLU as silu_mul computes it, then the activation rounding of linear() (k_quant.cu) over each
    // row's 128 columns: this warpgroup's 64 (lanes of a row: shuffles) and the other's (shared memory).
    float h[32], m0 = 0.f, m1 = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float gv = acc[4 * j + q], uv = acc[4 * (j + 8) + q];
        h[4 * j + q] = gv / (1.0f + expf(-gv)) * uv;
        if (q < 2) m0 = fmaxf(m0, fabsf(h[4 * j + q]));
        else m1 = fmaxf(m1, fabsf(h[4 * j + q]));
      }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      m0 = fmaxf(m0, __shfl_xor_sync(0xffffffffu, m0, o));
      m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, o));
    }
    if (t == 0) s_amax[wg * kBM + r0] = m0, s_amax[wg * kBM + r1] = m1;
    __syncthreads();
    const float sc0 = ue8m0_scale(fmaxf(s_amax[r0], s_amax[kBM + r0]));
    const float sc1 = ue8m0_scale(fmaxf(s_amax[r1], s_amax[kBM + r1]));
    uint8_t* q0 = a.act_q + size_t(row0 + r0) * N + n0 + 64 * wg + 2 * t;
    uint8_t* q1 = a.act_q + size_t(row0 + r1) * N + n0 + 64 * wg + 2 * t;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      *reinterpret_cast<uint16_t*>(q0 + 8 * j) = uint16_t(to_e4m3(h[4 * j] / sc0) | to_e4m3(h[4 * j + 1] / sc0) << 8);
      *reinterpret_cast<uint16_t*>(q1 + 8 * j) =
          uint16_t(to_e4m3(h[4 * j + 2] / sc1) | to_e4m3(h[4 * j + 3] / sc1) << 8);
    }
    if (wg == 0 && t == 0) {
      a.act_s[size_t(n0 / 128) * a.act_s_pitch + row0 + r0] = sc0;
      a.act_s[size_t(n0 / 128) * a.act_s_pitch + row0 + r1] = sc1;
    }
  } else {
    const int slot0 = a.tile_slot0[tile];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int col = n0 + kWN * wg + 8 * j + 2 * t;
      if (col >= N) continue;
      if (r0 < rows)
        *reinterpret_cast<float2*>(a.out + size_t(slot0 + r0) * N + col) = make_float2(acc[4 * j], acc[4 * j + 1]);
      if (r1 < rows)
        *reinterpret_cast<float2*>(a.out + size_t(slot0 + r1) * N + col) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
    }
  }
}
}  // namespace

bool moe_fp8_supported(int K, int N) { return K > 0 && N > 0 && K % kBK == 0 && N % 128 == 0; }

void launch_moe_fp8_gemm(const MoeFp8GemmArgs& a, bool gated, cudaStream_t st) {
  if (a.max_tiles == 0) return;
  static std::atomic<uint64_t> attr_set{0};
  once_per_device(attr_set, [] {
    cudaFuncSetAttribute(moe_fp8_gemm_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(kSmemBytes<true>));
    cudaFuncSetAttribute(moe_fp8_gemm_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(kSmemBytes<false>));
  });
  // Gated: 128 intermediate columns per block; down: 128 output columns.
  const dim3 grid(unsigned(a.N / 128), unsigned(a.max_tiles));
  if (gated) launch_k(moe_fp8_gemm_kernel<true>, grid, 128 * kWarpgroups<true>, kSmemBytes<true>, st, a);
  else launch_k(moe_fp8_gemm_kernel<false>, grid, 128 * kWarpgroups<false>, kSmemBytes<false>, st, a);
}

}  // namespace ds::backend::cuda
