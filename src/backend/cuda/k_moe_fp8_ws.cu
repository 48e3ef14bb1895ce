// The grouped FP8 expert GEMMs of large prefill chunks in a warp-specialised form with 128-row tiles
// (k_moe_fp8.cu is the 64-row form, for smaller batches; cuda_moe_fp8.cpp picks). Same op, numerics and
// arguments: wgmma m64n128k32 e4m3 x e4m3 into fp32, each 128-column K block folded into the accumulators x
// row scale x weight scale.
//
// Why a second form: the 64-row kernel's blocks (64 rows x 256 weight rows, each warpgroup with its own copy
// of the A rows) move 48 KB from L2 for every 2 M multiply-adds: at the tensor cores' rate that is ~11 TB/s
// per GPU, more than L2 delivers, which caps it near half the FP8 peak. Here a block is 128 rows x 256
// weight rows with both operands shared: 48 KB per 4 M multiply-adds.
//
// Block: 384 threads.
//   warpgroups 0 and 1 (consumers, 224 registers after setmaxnreg): rows 64 w .. 64 w + 63 of the tile, all
//     256 weight rows as two chains of 4 wgmmas (chain c: weight rows 128 c .. 128 c + 127, one 128 x 128
//     weight scale block). A chain goes into a 64-register temporary, is waited for and folded into its half
//     of the 128 accumulators; the other warpgroup's chain keeps the tensor cores busy meanwhile.
//     Gated: chain 0 = 128 gate rows, chain 1 = the matching 128 up rows, so a thread holds both factors of
//     its SwiGLU outputs and a quad of threads a row's whole 128-column scale block. Down: chain c = output
//     columns n0 + 128 c + [0, 128).
//     A warpgroup whose 64 rows are all padding (a tile's last, short tile) skips its MMAs.
//   warpgroup 2 (the producer, 56 registers): cp.async of each K block's A rows (gathered by row_token for
//     gate+up; padding rows zero-filled, never read), weight rows, row scales and the two weight scales into
//     one of 4 stages, completion on the stage's "full" mbarrier; it refills a stage once the 8 consumer
//     warps have arrived on its "empty" mbarrier.
// Shared memory: 4 stages x (A 128 x 128 + B 256 x 128 bytes, 128-byte swizzle) = 192 KB, scales, barriers.
//
// Grid: x = the block of weight rows (gate+up: 128 intermediate columns; down: 256 output columns), y = tile
// (a host-known bound); blocks past the tiles in use exit at once.
#include <atomic>

#include "backend/cuda/fp8_act.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/per_device.h"
#include "backend/cuda/sync_sm90.cuh"
#include "backend/cuda/wgmma_fp8.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kBM = kMoeFp8WsTileRows;  // rows per tile: two consumer warpgroups x one wgmma M
constexpr int kBN = 256;                // weight rows per block: two chains of one wgmma N
constexpr int kBK = 128;                // K per stage: one scale block, one 128-byte swizzled row
constexpr int kStages = 4;
constexpr int kABytes = kBM * kBK, kBBytes = kBN * kBK, kStageBytes = kABytes + kBBytes;
constexpr int kScaleFloats = kBM + 4;  // per stage: the rows' scales, the two chains' weight scales (padded)
constexpr int kThreads = 3 * 128;
// A kernel with wgmma gets registers per warpgroup: 384 threads start at 168; the producer hands most of its
// share to the consumers (2 x 224 + 56 = 504 <= 512).
constexpr int kRegsConsumer = 224, kRegsProducer = 56;
constexpr uint32_t kScaleOff = kStages * kStageBytes;
constexpr uint32_t kBarOff = kScaleOff + kStages * kScaleFloats * 4;  // full[kStages], then empty[kStages]
constexpr size_t kSmemBytes = 1024 + kBarOff + 2 * kStages * 8;
static_assert(kBM == 128 && kScaleFloats % 4 == 0 && kBarOff % 8 == 0, "layout");
static_assert(kSmemBytes <= 227 * 1024, "shared memory");

template <bool GATED>
__global__ void __launch_bounds__(kThreads, 1) moe_fp8_ws_kernel(const MoeFp8GemmArgs a) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023u) & ~1023u;  // the swizzle needs 1024-byte tiles
  const uint32_t bar_full = base + kBarOff, bar_empty = bar_full + 8 * kStages;  // [s] at + 8 s
  const float* const s_scale = reinterpret_cast<const float*>(smem_raw + (base - raw) + kScaleOff);
  const int tid = threadIdx.x, wg = tid / 128, wt = tid % 128;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bar_full + 8 * s, 128);  // the producer's threads, each when its copies of the stage landed
      mbar_init(bar_empty + 8 * s, 8);   // lane 0 of each consumer warp, its wgmmas on the stage done
    }
  }
  __syncthreads();
  pdl_prologue();  // the barriers are set up while the kernel before finishes
  const int tile = blockIdx.y;
  if (tile >= *a.n_tiles) return;
  const int e = a.tiles[3 * tile], row0 = a.tiles[3 * tile + 1], rows = a.tiles[3 * tile + 2];
  const MoeExpertPtrs& ex = a.experts[e];
  const int K = a.K, N = a.N, nk = K / kBK;
  const int n0 = blockIdx.x * (GATED ? 128 : kBN);  // gated: intermediate columns; down: output columns
  // Down: the second chain's 128 columns exist (N % 128 == 0, so a chain is wholly in or out).
  const bool chain1 = GATED || n0 + 128 < N;

  if (wg == 2) {
    // ---------------- producer: thread wt moves 16-byte chunk lc of rows lr + 16 i (A: i < 8, B: i < 16),
    // row wt's scale, and (wt < 2) chain wt's weight scale.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegsProducer));
    const int lc = wt % 8, lr = wt / 8;
    int a_row[8];  // the source row of x (gated) or of the padded rows (down); -1: padding, zeros
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int r = lr + 16 * i;
      a_row[i] = r >= rows ? -1 : GATED ? a.row_token[row0 + r] : row0 + r;
    }
    const int s_row = wt >= rows ? -1 : GATED ? a.row_token[row0 + wt] : row0 + wt;
    const uint8_t* w0 = static_cast<const uint8_t*>(ex.w[GATED ? 0 : 2]) + size_t(n0 + lr) * K + lc * 16;
    // Chain 1's rows (down: past N when !chain1; then w0 stands in, nothing is read).
    const uint8_t* w1 = GATED ? static_cast<const uint8_t*>(ex.w[1]) + size_t(n0 + lr) * K + lc * 16
                              : chain1 ? w0 + size_t(128) * K : w0;
    const bool ws_ok = wt == 0 || chain1;
    const float* ws = nullptr;  // chain wt's weight scales along K
    if (wt < 2) ws = ex.scale[GATED ? wt : 2] + size_t(GATED || !ws_ok ? n0 / 128 : n0 / 128 + wt) * a.scale_pitch;
    const uint32_t chunk = (lc ^ (lr & 7)) << 4;  // rows lr + 16 i: the same row % 8
#pragma unroll 1
    for (int kb = 0; kb < nk; ++kb) {
      const int s = kb % kStages;
      if (kb >= kStages) mbar_wait(bar_empty + 8 * s, (kb / kStages - 1) & 1);  // the consumers left stage s
      const uint32_t sa = base + s * kStageBytes, sb = sa + kABytes;
      const size_t koff = size_t(kb) * kBK;
#pragma unroll
      for (int i = 0; i < 8; ++i)
        cp_async16(sa + (lr + 16 * i) * 128 + chunk, a.a + size_t(a_row[i] < 0 ? 0 : a_row[i]) * K + lc * 16 + koff,
                   a_row[i] >= 0);
#pragma unroll
      for (int i = 0; i < 8; ++i) cp_async16(sb + (lr + 16 * i) * 128 + chunk, w0 + size_t(16 * i) * K + koff, true);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        cp_async16(sb + (128 + lr + 16 * i) * 128 + chunk, w1 + size_t(16 * i) * K + koff, chain1);
      cp_async4(base + kScaleOff + (s * kScaleFloats + wt) * 4,
                a.a_scale + size_t(kb) * a.a_scale_pitch + (s_row < 0 ? 0 : s_row), s_row >= 0);
      if (wt < 2) cp_async4(base + kScaleOff + (s * kScaleFloats + kBM + wt) * 4, ws + kb, ws_ok);
      mbar_arrive_cp_async(bar_full + 8 * s);
    }
    cp_async_commit();
    cp_async_wait_all();  // none in flight at exit
    return;
  }

  // ---------------- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegsConsumer));
  const int warp = wt / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const bool active = 64 * wg < rows;  // rows 64 wg .. 64 wg + 63 of the tile hold a token
  const int r0 = 64 * wg + 16 * warp + g, r1 = r0 + 8;  // this thread's rows in the tile
  float acc[128], tmp[64];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) tmp[i] = 0.f;
#pragma unroll 1
  for (int kb = 0; kb < nk; ++kb) {
    const int s = kb % kStages;
    mbar_wait(bar_full + 8 * s, (kb / kStages) & 1);
    if (!active) {
      if (lane == 0) mbar_arrive(bar_empty + 8 * s);
      continue;
    }
    fence_proxy_async_smem();  // the cp.async bytes, seen through this thread's acquire, for the tensor cores
    const float* sc = s_scale + s * kScaleFloats;
    const float sa0 = sc[r0], sa1 = sc[r1], sb0 = sc[kBM], sb1 = sc[kBM + 1];
    const uint32_t sa = base + s * kStageBytes + wg * (64 * 128), sb = base + s * kStageBytes + kABytes;
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      reg_fence(tmp);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kBK / 32; ++j)
        wgmma_m64n128k32_e4m3(tmp, wgmma_desc_sw128(sa + 32 * j), wgmma_desc_sw128(sb + c * (128 * 128) + 32 * j), j);
      wgmma_commit();
      reg_fence(tmp);
      wgmma_wait<0>();
      reg_fence(tmp);
      if (c == 1 && lane == 0) mbar_arrive(bar_empty + 8 * s);  // this warp is done with stage s
      const float f0 = sa0 * (c ? sb1 : sb0), f1 = sa1 * (c ? sb1 : sb0);
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        acc[64 * c + 4 * j] = fmaf(tmp[4 * j], f0, acc[64 * c + 4 * j]);
        acc[64 * c + 4 * j + 1] = fmaf(tmp[4 * j + 1], f0, acc[64 * c + 4 * j + 1]);
        acc[64 * c + 4 * j + 2] = fmaf(tmp[4 * j + 2], f1, acc[64 * c + 4 * j + 2]);
        acc[64 * c + 4 * j + 3] = fmaf(tmp[4 * j + 3], f1, acc[64 * c + 4 * j + 3]);
      }
    }
  }
  if (!active) return;

  // Accumulator layout (one m64n128 chain): acc[4 j + q] is row r0 (q < 2) or r1 (q >= 2), column 8 j + 2 t
  // + q % 2 of the chain.
  if constexpr (GATED) {
    // SwiGLU as silu_mul computes it (into the gate half), then the activation rounding of linear()
    // (k_quant.cu) over each row's 128 columns: the 4 threads of a quad hold them all.
    float m0 = 0.f, m1 = 0.f;
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      const float gv = acc[i], uv = acc[64 + i];
      acc[i] = gv / (1.0f + expf(-gv)) * uv;
      if (i % 4 < 2) m0 = fmaxf(m0, fabsf(acc[i]));
      else m1 = fmaxf(m1, fabsf(acc[i]));
    }
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      m0 = fmaxf(m0, __shfl_xor_sync(0xffffffffu, m0, o));
      m1 = fmaxf(m1, __shfl_xor_sync(0xffffffffu, m1, o));
    }
    const float sc0 = ue8m0_scale(m0), sc1 = ue8m0_scale(m1);
    uint8_t* q0 = a.act_q + size_t(row0 + r0) * N + n0 + 2 * t;
    uint8_t* q1 = a.act_q + size_t(row0 + r1) * N + n0 + 2 * t;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      *reinterpret_cast<uint16_t*>(q0 + 8 * j) = uint16_t(to_e4m3(acc[4 * j] / sc0) | to_e4m3(acc[4 * j + 1] / sc0) << 8);
      *reinterpret_cast<uint16_t*>(q1 + 8 * j) =
          uint16_t(to_e4m3(acc[4 * j + 2] / sc1) | to_e4m3(acc[4 * j + 3] / sc1) << 8);
    }
    if (t == 0) {
      a.act_s[size_t(n0 / 128) * a.act_s_pitch + row0 + r0] = sc0;
      a.act_s[size_t(n0 / 128) * a.act_s_pitch + row0 + r1] = sc1;
    }
  } else {
    const int slot0 = a.tile_slot0[tile];
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      if (c == 1 && !chain1) break;
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int col = n0 + 128 * c + 8 * j + 2 * t;
        if (r0 < rows)
          *reinterpret_cast<float2*>(a.out + size_t(slot0 + r0) * N + col) =
              make_float2(acc[64 * c + 4 * j], acc[64 * c + 4 * j + 1]);
        if (r1 < rows)
          *reinterpret_cast<float2*>(a.out + size_t(slot0 + r1) * N + col) =
              make_float2(acc[64 * c + 4 * j + 2], acc[64 * c + 4 * j + 3]);
      }
    }
  }
}
}  // namespace

void launch_moe_fp8_gemm_ws(const MoeFp8GemmArgs& a, bool gated, cudaStream_t st) {
  if (a.max_tiles == 0) return;
  static std::atomic<uint64_t> attr_set{0};
  once_per_device(attr_set, [] {
    cudaFuncSetAttribute(moe_fp8_ws_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes));
    cudaFuncSetAttribute(moe_fp8_ws_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes));
  });
  // Gated: 128 intermediate columns per block; down: 256 output columns.
  const dim3 grid(unsigned(gated ? a.N / 128 : (a.N + kBN - 1) / kBN), unsigned(a.max_tiles));
  if (gated) launch_k(moe_fp8_ws_kernel<true>, grid, kThreads, kSmemBytes, st, a);
  else launch_k(moe_fp8_ws_kernel<false>, grid, kThreads, kSmemBytes, st, a);
}

}  // namespace ds::backend::cuda
