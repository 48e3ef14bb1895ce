// The grouped decode MoE GEMMs of the fast mode (FP8 weights, f16 steps) with their weights staged
// through shared memory by the bulk copy engine. The per-thread form (k_moe_gemm.cu) keeps its weights in
// registers: each block owns one (tile, row block) item, reads tile -> expert -> rows before its first
// weight byte, and has 32 KB in flight at most, none during its epilogue; it streamed 63-73% of the HBM
// ceiling. Here a block (one or two per SM) walks the items (b, b + grid, ...), and a producer warp runs
// ahead of the 8 computing warps across item boundaries: a stage is the item's 32 weight rows x KC columns
// (one KC-byte bulk copy per row), the tile's activation rows for those columns and the stage's block
// scales, and up to STAGES stages are in flight while the computing warps work on the oldest and write the
// previous item's outputs. Shapes (MoeGemmArgs::bulk_cols x bulk_stages): 512 x 6 and 1,024 x 3 at one
// block per SM (96 KB of weights in flight), 512 x 3 at two.
//
// The computing warps do exactly what the per-thread form's warps do: warp w takes the 64-column steps
// KC / 64 * s + 8 j + w of stage s (j < KC / 512): the per-thread form's steps w, w + 8, ..., in the same
// order, with the same f16 step and epilogue (moe_gemm_common.cuh): the two forms' outputs are bitwise
// equal (gpu_ops_check).
//
// Shared memory: rows g and g + 1 of a stage sit KC + 64 bytes apart (64 mod 128: the 8 lanes of a
// 16-byte load phase hit disjoint banks); activation rows 4 KC + 32 bytes apart (32 mod 128), each lane
// reading its four 16-byte chunks in the order i ^ (t / 2): conflict-free too.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_gemm_common.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/sync_sm90.cuh"
#include "backend/cuda/tf32_mma.cuh"
#include "util/error.h"

namespace ds::backend::cuda {

namespace {
constexpr int kItemRows = 32;  // two matrix slots x 16 rows (gate + up, or 32 rows of down)
constexpr int kPartBytes = 2 * kMoeWarps * 16 * (kMoeTileRows + 1) * 4;  // one item's epilogue (NM = 2)

// A stage of KC columns (a multiple of 512: one 64-column step per computing warp per 512) in a ring of
// STAGES.
template <int KC, int STAGES>
struct BulkShape {
  static constexpr int kSteps = KC / (64 * kMoeWarps);  // steps per computing warp per stage
  static constexpr int kWPitch = KC + 64;
  static constexpr int kXPitch = KC * 4 + 32;
  static constexpr int kScales = KC / 128;  // block scales per matrix slot per stage
  struct Meta {
    float sc[2][kScales];  // the two matrix slots' block scales of the stage's 128-column blocks
    int slot0, rows, n0, pad;
  };
  static constexpr int kWBytes = kItemRows * kWPitch;
  static constexpr int kXBytes = kMoeTileRows * kXPitch;
  static constexpr int kBlocksPerSm = KC == 512 && STAGES <= 3 ? 2 : 1;
  // Two epilogue buffers save a barrier per item; two blocks of 114.7 KB (+ 1 KB reserved each) fit the SM's
  // 228 KB only with one.
  static constexpr int kEpilogueBuffers = kBlocksPerSm == 1 ? 2 : 1;
  static constexpr size_t kSmemBytes = size_t(STAGES) * (kWBytes + kXBytes + sizeof(Meta)) +
                                       size_t(kEpilogueBuffers) * kPartBytes + 2 * STAGES * 8;
  static_assert(KC % (64 * kMoeWarps) == 0 && sizeof(Meta) % 16 == 0 && kWBytes % 16 == 0 && kXBytes % 16 == 0,
                "bulk copies: 16-byte aligned");
  static_assert(2 * kScales <= 32, "a lane per scale");
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ uint4 lds128(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }

// What the producer lane needs of one item, read in three dependent steps (begin, pointers, scales).
struct ProducerItem {
  int item = 0, e = 0, slot0 = 0, rows = 0, n0 = 0;
  bool valid = false;
  const uint8_t* wrow = nullptr;  // this lane's weight row
  const float* xrow = nullptr;    // this lane's activation row (lane < rows)
  const float* sbase0 = nullptr;  // the two matrix slots' scale rows of the row block
  const float* sbase1 = nullptr;
  float sreg[4] = {0.f, 0.f, 0.f, 0.f};        // scale i (slot i / nkb, block i % nkb) is sreg[i / 32] of lane i % 32
  __device__ __forceinline__ void begin(const MoeGemmArgs& a, int it, int n_items, int nrb, int kRows) {
    item = it, valid = it < n_items;
    if (!valid) return;
    const int tile = it / nrb;
    n0 = it % nrb * kRows;
    e = __ldg(a.tiles + 3 * tile), slot0 = __ldg(a.tiles + 3 * tile + 1), rows = __ldg(a.tiles + 3 * tile + 2);
  }
  template <bool GATED, bool PAIR>
  __device__ __forceinline__ void pointers(const MoeGemmArgs& a, int lane) {
    if (!valid) return;
    const MoeExpertPtrs& ex = e == a.shared_e ? a.shared : a.experts[e];
    wrow = moe_lane_weight_row<GATED, PAIR>(a, ex, n0, lane);
    sbase0 = (GATED ? ex.scale[0] : ex.scale[2]) + size_t(n0 / 128) * a.scale_pitch;
    sbase1 = (GATED ? ex.scale[1] : ex.scale[2]) + size_t(n0 / 128) * a.scale_pitch;
    xrow = nullptr;
    if (lane < rows) xrow = a.x + size_t(a.x_row_of_slot ? __ldg(a.x_row_of_slot + slot0 + lane) : slot0 + lane) * a.K;
  }
  __device__ __forceinline__ void scales(const MoeGemmArgs& a, int lane, int nkb) {
    if (!valid) return;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int i = lane + 32 * j;
      sreg[j] = i < 2 * nkb ? __ldg(i < nkb ? sbase0 + i : sbase1 + (i - nkb)) : 0.f;
    }
  }
  // Scale i (i < 2 * nkb; any value elsewhere), for the calling lane; every lane of the warp calls.
  __device__ __forceinline__ float scale(int i, int lane) const {
    const int src = i & 31, r = (i >> 5) & 3;
    float v = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float x = __shfl_sync(0xffffffffu, sreg[j], src);
      if (r == j) v = x;
    }
    return v;
  }
};

// KIND 1: gate + up (16 rows of each, SwiGLU); 2: down, 32 rows. KC x kStages: the ring (BulkShape).
template <int KIND, int KC, int kStages>
__global__ void __launch_bounds__((kMoeWarps + 1) * 32, BulkShape<KC, kStages>::kBlocksPerSm)
    moe_bulk_kernel(MoeGemmArgs a) {
  using Sh = BulkShape<KC, kStages>;
  constexpr int kWBytes = Sh::kWBytes, kXBytes = Sh::kXBytes, kWPitch = Sh::kWPitch, kXPitch = Sh::kXPitch;
  using StageMeta = typename Sh::Meta;
  constexpr bool GATED = KIND == 1, PAIR = KIND == 2;
  constexpr int kRows = PAIR ? 32 : 16;  // a row block's rows of each matrix slot's matrix
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* const sw = smem;
  uint8_t* const sx = sw + kStages * kWBytes;
  StageMeta* const meta = reinterpret_cast<StageMeta*>(sx + kStages * kXBytes);
  auto* const part = reinterpret_cast<float(*)[2][kMoeWarps][16][kMoeTileRows + 1]>(meta + kStages);
  const uint32_t bars = smem_addr(reinterpret_cast<uint8_t*>(part) + Sh::kEpilogueBuffers * kPartBytes);
  auto full = [&](int s) { return bars + 8 * s; };
  auto empty = [&](int s) { return bars + 8 * (kStages + s); };
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbar_init(full(s), 2 * Sh::kScales), mbar_init(empty(s), kMoeWarps);
  }
  __syncthreads();
  pdl_prologue();  // the tiles come from the lists kernel
  const int K = a.K, N = a.N;
  const int nrb = (N + kRows - 1) / kRows;
  const int n_items = *a.n_tiles * nrb;

  if (warp == kMoeWarps) {
    // The producer. Lane l copies weight row l of each stage (matrix slot l / 16, row l % 16) and, for
    // l < rows, activation row l; lanes 0 .. 2 KC / 128 - 1 write the stage's scales. No global load waits
    // inside the stage loop: an item's tile, pointers and scales are read while the item before streams, one
    // dependent step per stage (tile; expert pointers and activation rows; the scales, 4 a lane), so that
    // the copies keep coming (a scale read per stage, measured first, held the kernel to ~30% of the
    // ceiling).
    const int nkb = (K + 127) / 128;  // <= 64 (moe_bulk_supported): 2 x nkb scales fit 4 a lane
    ProducerItem cur, nxt;
    cur.begin(a, blockIdx.x, n_items, nrb, kRows);
    cur.template pointers<GATED, PAIR>(a, lane);
    cur.scales(a, lane, nkb);
    int it = 0;
    for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
      int ph = 0;
      auto advance = [&] {  // one dependent step of the next item's reads
        if (ph == 0) nxt.begin(a, item + gridDim.x, n_items, nrb, kRows);
        else if (ph == 1) nxt.template pointers<GATED, PAIR>(a, lane);
        else if (ph == 2) nxt.scales(a, lane, nkb);
        ++ph;
      };
      const int smi = lane / Sh::kScales, sj = lane % Sh::kScales;  // scale (slot smi, block sj)
      for (int k0 = 0; k0 < K; k0 += KC, ++it) {
        advance();
        const int s = it % kStages;
        mbar_wait(empty(s), ((it / kStages) & 1) ^ 1);
        const int cols = min(KC, K - k0);
        const int kb = k0 / 128 + sj;
        const float sc = cur.scale(smi * nkb + kb, lane);  // every lane takes part (shuffles)
        if (lane < 2 * Sh::kScales) {
          meta[s].sc[smi][sj] = kb < nkb ? sc : 0.f;
          if (lane == 0) {
            meta[s].slot0 = cur.slot0, meta[s].rows = cur.rows, meta[s].n0 = cur.n0;
            mbar_arrive_expect_tx(full(s), uint32_t(cols) * (kItemRows + 4 * cur.rows));
          } else {
            mbar_arrive(full(s));
          }
        }
        __syncwarp();  // the transaction bytes are expected before any copy can complete
        bulk_copy_g2s(smem_addr(sw + s * kWBytes + lane * kWPitch), cur.wrow + k0, uint32_t(cols), full(s));
        if (cur.xrow)
          bulk_copy_g2s(smem_addr(sx + s * kXBytes + lane * kXPitch), cur.xrow + k0, uint32_t(cols) * 4, full(s));
      }
      while (ph < 3) advance();  // items of fewer than 3 stages
      cur = nxt;
    }
    return;
  }

  // The computing warps: lane (g, t) as in the per-thread form.
  const int g = lane >> 2, t = lane & 3, sw_x = (t >> 1) & 1;
  int it = 0, ip = 0;
  for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
    float acc[2][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) acc[mi][0] = acc[mi][1] = acc[mi][2] = acc[mi][3] = 0.f;
    int slot0 = 0, rows = 0, n0 = 0;
    for (int k0 = 0; k0 < K; k0 += KC, ++it) {
      const int s = it % kStages;
      mbar_wait(full(s), (it / kStages) & 1);
      const StageMeta& m = meta[s];
      slot0 = m.slot0, rows = m.rows, n0 = m.n0;
      Row16<int(WType::FP8)> wa[2][Sh::kSteps], wb[2][Sh::kSteps];
      float xv[Sh::kSteps][16], sc[Sh::kSteps][2];
#pragma unroll
      for (int j = 0; j < Sh::kSteps; ++j) {
        const int c = 512 * j + 64 * warp + 16 * t;  // this lane's 16 columns of step j
        const bool kin = k0 + c < K;
        const uint8_t* ws = sw + s * kWBytes + c;
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          wa[mi][j].v[0] = kin ? lds128(ws + (16 * mi + g) * kWPitch) : make_uint4(0, 0, 0, 0);
          wb[mi][j].v[0] = kin ? lds128(ws + (16 * mi + g + 8) * kWPitch) : make_uint4(0, 0, 0, 0);
        }
        if (kin && g < rows) {
          moe_load_x16_staged(reinterpret_cast<const float4*>(sx + s * kXBytes + g * kXPitch + 4 * c), sw_x, xv[j]);
        } else {
#pragma unroll
          for (int q = 0; q < 16; ++q) xv[j][q] = 0.f;
        }
        sc[j][0] = m.sc[0][4 * j + warp / 2], sc[j][1] = m.sc[1][4 * j + warp / 2];
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(empty(s));  // release: this warp's reads of the stage are done
#pragma unroll
      for (int j = 0; j < Sh::kSteps; ++j) moe_step_f16(wa, wb, j, xv[j], t, sc[j], acc);
    }
    moe_epilogue<GATED, PAIR, 1>(part[ip], acc, a.y, N, n0, slot0, rows);
    // Two buffers: the next item writes the other one, so one barrier per item suffices; with one, the
    // buffer's reads end before the next item's writes.
    if constexpr (Sh::kEpilogueBuffers == 2) ip ^= 1;
    else named_bar_sync<1, kMoeWarps * 32>();
  }
}

template <int KIND, int KC, int S>
void launch_bulk(const MoeGemmArgs& a, cudaStream_t st) {
  using Sh = BulkShape<KC, S>;
  static bool attr_set = [] {
    return cudaFuncSetAttribute(moe_bulk_kernel<KIND, KC, S>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                int(Sh::kSmemBytes)) == cudaSuccess;
  }();
  DS_CHECK(attr_set, "moe bulk kernel: {} bytes of shared memory not available", Sh::kSmemBytes);
  const dim3 grid{unsigned(std::max(1, a.num_sms * Sh::kBlocksPerSm))};
  launch_k(moe_bulk_kernel<KIND, KC, S>, grid, (kMoeWarps + 1) * 32, Sh::kSmemBytes, st, a);
}

template <int KIND>
void launch_bulk_shape(const MoeGemmArgs& a, cudaStream_t st) {
  if (a.bulk_cols == 1024) return launch_bulk<KIND, 1024, 3>(a, st);
  if (a.bulk_stages == 3) return launch_bulk<KIND, 512, 3>(a, st);
  launch_bulk<KIND, 512, 6>(a, st);
}
}  // namespace

bool moe_bulk_shape_known(int cols, int stages) {
  return (cols == 512 && (stages == 3 || stages == 6)) || (cols == 1024 && stages == 3);
}

bool moe_staged_supported(const MoeGemmArgs& a, bool gated) {
  return a.wtype == WType::FP8 && a.f16_x && (gated || a.down_rows == 32) && a.K % 16 == 0 && a.num_sms > 0;
}

bool moe_bulk_supported(const MoeGemmArgs& a, bool gated) {
  return moe_staged_supported(a, gated) && a.K <= 8192 && moe_bulk_shape_known(a.bulk_cols, a.bulk_stages);
}

void launch_moe_bulk_gemm(const MoeGemmArgs& a, bool gated, cudaStream_t st) {
  DS_CHECK(moe_bulk_supported(a, gated), "moe bulk GEMM: unsupported arguments (K {}, f16 x {}, shape {} x {})", a.K,
           a.f16_x, a.bulk_cols, a.bulk_stages);
  if (a.max_tiles == 0 || a.N == 0) return;
  if (gated) launch_bulk_shape<1>(a, st);
  else launch_bulk_shape<2>(a, st);
}

}  // namespace ds::backend::cuda
