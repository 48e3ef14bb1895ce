// The grouped decode MoE GEMMs of the fast mode (FP8 weights, f16 steps), a third form: each computing warp
// streams its own 64 columns of every stage through a private ring in shared memory with cp.async, S - 1
// stages ahead, across item boundaries. Beside the per-thread form (k_moe_gemm.cu: a group of steps in
// registers, then nothing in flight while it computes; a block per item, its tile -> expert -> rows reads
// before the first weight byte) and the bulk form (k_moe_bulk.cu: one producer warp issues every copy of
// the block), this one keeps the bytes in flight steady without a producer: no mbarriers, no cross-warp
// wait but the item's epilogue.
//
// A block (one per SM) walks the items b, b + grid, ... as the bulk form does; a stage is 512 columns of the
// item's 32 weight rows; warp w owns columns 64 w .. 64 w + 63 of every stage (the per-thread form's steps
// w, w + 8, ..., in its order, with the same step and epilogue functions: bitwise equal outputs). Per warp
// and stage: the 32 rows' 64 bytes (lane l copies row l), the tile's 8 activation rows' 64 floats (lane l
// copies a quarter of slot l / 4's; zeros past the tile's rows or K), the two matrix slots' block scales.
// Activation rows sit 288 bytes apart (32 mod 128) and each lane reads its four 16-byte chunks in the order
// i ^ (t / 2), as in the bulk form: conflict-free; weight rows are 64 bytes apart: a 16-byte load phase of
// 8 lanes reads 128 contiguous bytes.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/moe_gemm_common.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/tf32_mma.cuh"
#include "util/error.h"

namespace ds::backend::cuda {

namespace {
constexpr int kKC = 64 * kMoeWarps;                                      // columns of a stage
constexpr int kWSlot = 32 * 64;                                          // a warp's weight bytes per stage
constexpr int kXPitch = 64 * 4 + 32;                                     // an activation row's bytes
constexpr int kXSlot = kMoeTileRows * kXPitch;                           // a warp's activation bytes per stage
constexpr int kSlot = kWSlot + kXSlot + 16;                              // + the two scales (padded)
constexpr int kPartBytes = 2 * kMoeWarps * 16 * (kMoeTileRows + 1) * 4;  // one item's epilogue (NM = 2)
template <int S>
constexpr size_t ring_smem_bytes() {
  return size_t(kMoeWarps) * S * kSlot + 2 * size_t(kPartBytes);
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// KIND 1: gate + up (16 rows of each, SwiGLU); 2: down, 32 rows. S: stages of each warp's ring.
template <int KIND, int S>
__global__ void __launch_bounds__(kMoeWarps * 32, 1) moe_ring_kernel(MoeGemmArgs a) {
  constexpr bool GATED = KIND == 1, PAIR = KIND == 2;
  constexpr int kRows = PAIR ? 32 : 16;  // a row block's rows of each matrix slot's matrix
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3, sw_x = (t >> 1) & 1;
  uint8_t* const ring = smem + size_t(warp) * S * kSlot;
  auto* const part = reinterpret_cast<float(*)[2][kMoeWarps][16][kMoeTileRows + 1]>(smem + size_t(kMoeWarps) * S * kSlot);
  pdl_prologue();  // the tiles come from the lists kernel
  const int K = a.K, N = a.N;
  const int nrb = (N + kRows - 1) / kRows, nst = (K + kKC - 1) / kKC;
  const int n_items = *a.n_tiles * nrb;
  const int my_items = blockIdx.x < n_items ? (n_items - 1 - blockIdx.x) / gridDim.x + 1 : 0;
  const int total = my_items * nst;  // this block's stages, items in order

  // The issuing side: the item of the stage being issued and what this lane copies of it.
  int issue_item = -1;
  const uint8_t* wrow = nullptr;  // this lane's weight row (row l % 16 of matrix slot l / 16)
  const float* xrow = nullptr;    // slot l / 4's activation row, or null past the tile's rows
  const float* srow = nullptr;    // lanes 0, 1: matrix slot l's scale row of the row block
  auto item_info = [&](int item) {
    const int tile = item / nrb, n0 = item % nrb * kRows;
    const int e = __ldg(a.tiles + 3 * tile), slot0 = __ldg(a.tiles + 3 * tile + 1), rows = __ldg(a.tiles + 3 * tile + 2);
    const MoeExpertPtrs& ex = e == a.shared_e ? a.shared : a.experts[e];
    wrow = moe_lane_weight_row<GATED, PAIR>(a, ex, n0, lane);
    const int slot = lane / 4;
    xrow = slot < rows ? a.x + size_t(a.x_row_of_slot ? __ldg(a.x_row_of_slot + slot0 + slot) : slot0 + slot) * K
                       : nullptr;
    const float* sb = GATED ? (lane == 0 ? ex.scale[0] : ex.scale[1]) : ex.scale[2];
    srow = lane < 2 ? sb + size_t(n0 / 128) * a.scale_pitch : nullptr;
  };
  auto issue = [&](int q) {  // stage q of this block into ring slot q % S, then a commit (empty past the end)
    if (q < total) {
      const int item = blockIdx.x + (q / nst) * int(gridDim.x), k0 = (q % nst) * kKC;
      if (item != issue_item) item_info(item), issue_item = item;
      uint8_t* sl = ring + (q % S) * kSlot;
      const int c = k0 + 64 * warp;  // this warp's first column of the stage
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int k = c + 16 * i;
        cp_async16(smem_u32(sl + lane * 64 + 16 * i), k < K ? wrow + k : wrow, k < K);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int k = c + 16 * (lane % 4) + 4 * i;
        cp_async16(smem_u32(sl + kWSlot + (lane / 4) * kXPitch + 4 * (16 * (lane % 4) + 4 * i)),
                   xrow && k < K ? xrow + k : a.x, xrow && k < K);
      }
      if (lane < 2) cp_async4(smem_u32(sl + kWSlot + kXSlot + 4 * lane), srow ? srow + c / 128 : a.x, srow && c < K);
    }
    cp_async_commit();
  };

  for (int q = 0; q < S - 1; ++q) issue(q);
  int ip = 0;
  float acc[2][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) acc[mi][0] = acc[mi][1] = acc[mi][2] = acc[mi][3] = 0.f;
  int slot0 = 0, rows = 0, n0 = 0;  // the consumed item's, for its epilogue
  for (int q = 0; q < total; ++q) {
    if (q % nst == 0) {  // a new item: its outputs' place, read now, used at its end
      const int item = blockIdx.x + (q / nst) * int(gridDim.x), tile = item / nrb;
      n0 = item % nrb * kRows;
      slot0 = __ldg(a.tiles + 3 * tile + 1), rows = __ldg(a.tiles + 3 * tile + 2);
    }
    issue(q + S - 1);
    cp_async_wait<S - 1>();  // this lane's copies of stage q have landed
    __syncwarp();            // and every lane's
    const uint8_t* sl = ring + (q % S) * kSlot;
    // Copies past K (weights and activations) were zero-filled: they add exactly nothing, as in the other forms.
    Row16<int(WType::FP8)> wa[2][1], wb[2][1];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      wa[mi][0].v[0] = *reinterpret_cast<const uint4*>(sl + (16 * mi + g) * 64 + 16 * t);
      wb[mi][0].v[0] = *reinterpret_cast<const uint4*>(sl + (16 * mi + g + 8) * 64 + 16 * t);
    }
    float xv[16];
    moe_load_x16_staged(reinterpret_cast<const float4*>(sl + kWSlot + g * kXPitch + 64 * t), sw_x, xv);
    const float* scs = reinterpret_cast<const float*>(sl + kWSlot + kXSlot);
    const float sc[2] = {scs[0], scs[1]};
    __syncwarp();  // every lane's reads of the slot are done before a later issue overwrites it
    moe_step_f16(wa, wb, 0, xv, t, sc, acc);
    if (q % nst == nst - 1) {
      moe_epilogue<GATED, PAIR, 0>(part[ip], acc, a.y, N, n0, slot0, rows);
      ip ^= 1;  // two buffers: one barrier per item
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) acc[mi][0] = acc[mi][1] = acc[mi][2] = acc[mi][3] = 0.f;
    }
  }
  cp_async_wait_all();
}

template <int KIND>
void launch_ring(const MoeGemmArgs& a, cudaStream_t st) {
  constexpr int S = 6;
  static bool attr_set = [] {
    return cudaFuncSetAttribute(moe_ring_kernel<KIND, S>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                int(ring_smem_bytes<S>())) == cudaSuccess;
  }();
  DS_CHECK(attr_set, "moe ring kernel: {} bytes of shared memory not available", ring_smem_bytes<S>());
  launch_k(moe_ring_kernel<KIND, S>, dim3(unsigned(std::max(1, a.num_sms))), kMoeWarps * 32, ring_smem_bytes<S>(), st,
           a);
}
}  // namespace

bool moe_ring_supported(const MoeGemmArgs& a, bool gated) { return moe_staged_supported(a, gated); }

void launch_moe_ring_gemm(const MoeGemmArgs& a, bool gated, cudaStream_t st) {
  DS_CHECK(moe_ring_supported(a, gated), "moe ring GEMM: unsupported arguments (K {}, f16 x {})", a.K, a.f16_x);
  if (a.max_tiles == 0 || a.N == 0) return;
  if (gated) launch_ring<1>(a, st);
  else launch_ring<2>(a, st);
}

}  // namespace ds::backend::cuda
