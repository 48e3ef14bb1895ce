// The lightning indexer's scores on tensor cores (Hopper, mma.sync BF16), the fast GEMM mode's path:
//   s(t, j) = sum_h w[t,h] * relu(q[t,h,:] . k_j)   for every j <= p(t), keys through the page table.
// Same inputs, outputs and skipped rows as score_kernel (k_indexer.cu); the top-k there reads the rows.
//
// Shapes: head_dim 128, up to 64 heads (rows past `heads` are zeros with weight 0).
// Block: QB queries (consecutive rows of the chunk) x a range of a.tiles tiles of 64 keys; 4 warps per
// query, warp m of query i owning heads 16m .. 16m + 15 of it: its query rows live in registers as MMA A
// fragments (loaded once per block), the key tile is shared by all warps through shared memory. QB = 2
// for large chunks: in prefill the queries of a chunk are consecutive positions of one sequence, so one
// gathered key tile feeds 2 queries (QB = 4 measured slower: 512 threads at 128 registers allow one
// block per SM, whose copy / convert / MMA phases then never overlap). QB = 1 for decode-sized chunks
// (each query its own sequence). Two blocks per SM either way (three for FP8 keys at QB = 1). The
// queries of a block need not share a sequence (mixed batches, captured steps whose contents the launch
// does not know): the block makes one pass over the key range per distinct sequence, the warps of the
// other queries idling through it.
//
// Per tile: cp.async copies the gathered fp32 rows two tiles ahead into a staging buffer; the block
// converts the current one to bf16 hi + lo (swizzled rows for conflict-free ldmatrix), then each warp
// computes its 16 heads x 64 keys with m16n8k16 MMAs, applies relu and the head weights and sums its 16
// heads with shuffles; the 4 warps of a query add their partial sums through shared memory.
//
// Precision: x = hi + lo in bf16 (|x - hi - lo| <= 2^-17 |x|), products as hi*hi + lo*hi + hi*lo (the
// lo*lo term is below 2^-16 of the product): ~fp32 accuracy for IndexerMode::Fp32's arbitrary values.
// IndexerMode::Fp8's values (Hadamard + e4m3 with power-of-two row scales) are exact in bf16, so their lo
// parts are all zero and the two correction MMAs add exact zeros. The kernel skips them when that is
// seen: per warp for the query (any nonzero lo among its fragments) and per tile for the keys (a block
// vote during the conversion). Skipping exact-zero products changes no bit of the result, so the test
// needs no knowledge of the mode, and costs one vote per tile; the Fp8 mode runs one MMA per product.
//
// Packed FP8 keys (--kv-cache-dtype fp8_e4m3, 132-byte rows): their own instantiation. The staging rows are
// the packed rows (one contiguous 8,448-byte copy per tile where pages hold whole tiles), the conversion
// is kv_bf16x8's exponent arithmetic (a dequantised key is a bf16 value: no lo part, no vote), and the
// smaller shared memory (34 KB) allows 3 blocks per SM at decode.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/per_device.h"

namespace ds::backend::cuda {

namespace {
constexpr int D = 128;                    // head_dim
constexpr int MaxHeads = 64;              // 4 m-tiles of 16 heads, one warp each
constexpr int KT = 64;                    // keys per tile
constexpr int kRowB = D * 2;              // bytes of a bf16 key row (16 chunks)
constexpr int kStageBytes = KT * D * 4;   // an fp32 key tile (32 KB)
constexpr int kHalfBytes = KT * kRowB;    // the hi (or lo) bf16 tile (16 KB)

// S = Q K^T for one warp's 16 heads x KT keys of the current tile, k-step by k-step. The 4 ldmatrix of a
// k-step are issued before its MMAs (asm volatile keeps the order written, so the load latency is
// overlapped here and not by the compiler). Products: hi*hi, + lo*hi with QLO (the query's lo parts),
// + hi*lo with KLO (the keys'); the parts left out are exact zeros where they are left out.
template <bool QLO, bool KLO>
__device__ __forceinline__ void tile_scores(float (&acc)[KT / 8][4], const uint32_t (&qh)[D / 16][4],
                                            const uint32_t (&ql)[D / 16][4], uint32_t s_hi, uint32_t s_lo, int kr,
                                            int lm, int lr) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const uint32_t off = kr * kRowB + (((2 * ks + (lm & 1)) ^ lr) << 4);  // swz(kr, 2 ks + .., kRowB)
    uint32_t b[KT / 16][4];
#pragma unroll
    for (int np = 0; np < KT / 16; ++np) ldsm_x4(b[np], s_hi + off + np * 16 * kRowB);
#pragma unroll
    for (int np = 0; np < KT / 16; ++np) {
      mma_bf16(acc[2 * np], qh[ks], b[np][0], b[np][1]);
      mma_bf16(acc[2 * np + 1], qh[ks], b[np][2], b[np][3]);
      if constexpr (QLO) {
        mma_bf16(acc[2 * np], ql[ks], b[np][0], b[np][1]);
        mma_bf16(acc[2 * np + 1], ql[ks], b[np][2], b[np][3]);
      }
    }
    if constexpr (KLO) {
#pragma unroll
      for (int np = 0; np < KT / 16; ++np) ldsm_x4(b[np], s_lo + off + np * 16 * kRowB);
#pragma unroll
      for (int np = 0; np < KT / 16; ++np) {
        mma_bf16(acc[2 * np], qh[ks], b[np][0], b[np][1]);
        mma_bf16(acc[2 * np + 1], qh[ks], b[np][2], b[np][3]);
      }
    }
  }
}

// FP8 keys: the staging rows are the pool's packed 132-byte rows, and the bf16 keys have no lo part (a
// dequantised value is a bf16 value), so a block needs ~34 KB instead of ~97 KB.
constexpr int kFp8RowB = D + 4;                 // packed key: 128 e4m3 codes + one fp32 scale
constexpr int kFp8StageBytes = KT * kFp8RowB;   // 8448: a multiple of 16

template <int QB, bool FP8>
constexpr size_t tc_smem_bytes() {
  return FP8 ? 2 * kFp8StageBytes + kHalfBytes + size_t(4 * QB) * KT * 4
             : 2 * kStageBytes + 2 * kHalfBytes + size_t(4 * QB) * KT * 4;
}

__device__ __forceinline__ int slot_at(const int32_t* pt, int pt_lo, int pt_n, int page_size, int j) {
  const int pg = j / page_size;
  return pg < pt_n ? __ldg(pt + pt_lo + pg) * page_size + (j - pg * page_size) : -1;
}

// FP8: packed keys (a.k_fp8, 132-byte rows), a separate instantiation with 3 blocks per SM (its smaller
// shared memory allows it: more warps to hide the per-tile latency chain).
template <int QB, bool FP8>
__global__ void __launch_bounds__(QB * 128, FP8 && QB == 1 ? 3 : 2) score_tc_kernel(IndexerArgs a) {
  pdl_prologue();
  constexpr int NW = 4 * QB, NT = NW * 32;
  constexpr int TPR = NT / KT;        // threads per key row in the copy
  constexpr int CPT = (D / 4) / TPR;  // 16-byte fp32 chunks per thread and tile
  constexpr int stage_bytes = FP8 ? kFp8StageBytes : kStageBytes;
  extern __shared__ __align__(128) uint8_t sm[];
  const uint32_t s_stage = smem_addr(sm);            // [2][KT] staging rows (cp.async): fp32 or packed FP8
  uint8_t* khi = sm + 2 * stage_bytes;                // [KT] swizzled bf16 rows: hi, then lo (fp32 keys)
  uint8_t* klo = FP8 ? khi : khi + kHalfBytes;
  const uint32_t s_hi = smem_addr(khi), s_lo = smem_addr(klo);
  float* red = reinterpret_cast<float*>(klo + kHalfBytes);  // [NW][KT] per-warp partial sums

  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int lr = lane & 7, lm = lane >> 3;  // ldmatrix: row within an 8x8 matrix, which matrix
  const int qi = w >> 2, mt = w & 3;        // this warp: query qi of the block, heads 16 mt ..
  const int span = KT * a.tiles, jb = blockIdx.x * span;
  const int tc0 = blockIdx.y * QB;

  // The block's queries: scored here when inside the chunk, with a context over top-k, reaching jb.
  int pos[QB], seqs[QB];
  bool act[QB];
  bool any = false;
#pragma unroll
  for (int i = 0; i < QB; ++i) {
    const int tc = tc0 + i;
    pos[i] = -1, seqs[i] = -1;
    if (tc < a.Tc) pos[i] = __ldg(a.b.pos_of_token + a.t0 + tc), seqs[i] = __ldg(a.b.seq_of_token + a.t0 + tc);
    act[i] = tc < a.Tc && pos[i] + 1 > a.topk && pos[i] >= jb;
    any |= act[i];
  }
  if (!any) return;
  // This warp's query, apart: a register array indexed by the run-time qi would go to local memory.
  const int my_tc = tc0 + qi;
  int my_p = -1, my_seq = -1;
  if (my_tc < a.Tc) my_p = __ldg(a.b.pos_of_token + a.t0 + my_tc), my_seq = __ldg(a.b.seq_of_token + a.t0 + my_tc);
  const bool my_act = my_tc < a.Tc && my_p + 1 > a.topk && my_p >= jb;

  // ---- A fragments of heads 16 mt .. (rows g, g + 8), k-step ks: columns 16 ks + 2 tq (+1) and +8 (+9).
  uint32_t qh[D / 16][4], ql[D / 16][4];
  float w0 = 0.f, w1 = 0.f;
  bool q_lo = false;  // any nonzero lo part in this warp's fragments (uniform over the warp)
  {
    const int h0 = 16 * mt + g, h1 = h0 + 8;
    const bool ok0 = my_act && h0 < a.heads, ok1 = my_act && h1 < a.heads;
    const size_t t = size_t(a.t0) + (my_act ? my_tc : 0);
    const float* r0 = a.q + (t * a.heads + (ok0 ? h0 : 0)) * D + 2 * tq;
    const float* r1 = a.q + (t * a.heads + (ok1 ? h1 : 0)) * D + 2 * tq;
    const float2 z = make_float2(0.f, 0.f);
    uint32_t lo_bits = 0;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const float2 x00 = ok0 ? __ldg(reinterpret_cast<const float2*>(r0 + 16 * ks)) : z;
      const float2 x10 = ok1 ? __ldg(reinterpret_cast<const float2*>(r1 + 16 * ks)) : z;
      const float2 x01 = ok0 ? __ldg(reinterpret_cast<const float2*>(r0 + 16 * ks + 8)) : z;
      const float2 x11 = ok1 ? __ldg(reinterpret_cast<const float2*>(r1 + 16 * ks + 8)) : z;
      split2(x00.x, x00.y, qh[ks][0], ql[ks][0]);
      split2(x10.x, x10.y, qh[ks][1], ql[ks][1]);
      split2(x01.x, x01.y, qh[ks][2], ql[ks][2]);
      split2(x11.x, x11.y, qh[ks][3], ql[ks][3]);
      lo_bits |= ql[ks][0] | ql[ks][1] | ql[ks][2] | ql[ks][3];
    }
    if (ok0) w0 = __ldg(a.w + t * a.heads + h0);
    if (ok1) w1 = __ldg(a.w + t * a.heads + h1);
    q_lo = __any_sync(0xffffffffu, (lo_bits & 0x7fff7fffu) != 0);  // -0 parts count as zeros
  }

  // Key-row copy roles: row cr of the tile, 16-byte chunks cc0 + TPR k.
  const int cr = tid / TPR, cc0 = tid % TPR;
  // FP8 keys with pages of whole tiles (a tile starts at a multiple of KT): one contiguous copy per tile.
  const bool whole_pages = FP8 && a.b.page_size % KT == 0;
  const int32_t* pt = a.b.pt;
  const int page_size = a.b.page_size;

  // ---- one pass per distinct sequence among the block's active queries (one pass in prefill and decode)
#pragma unroll 1
  for (int lead = 0; lead < QB; ++lead) {
    bool first = act[lead];
    int pmax = -1;
#pragma unroll
    for (int i = 0; i < QB; ++i) {
      if (i < lead && act[i] && seqs[i] == seqs[lead]) first = false;
      if (act[i] && seqs[i] == seqs[lead]) pmax = max(pmax, pos[i]);
    }
    if (!first) continue;  // uniform: every thread computes the same from the same loads
    const int seq = seqs[lead];
    const bool mine = my_act && my_seq == seq;  // this warp's query is scored in this pass
    const int jend = min(jb + span, pmax + 1);
    const int ntiles = (jend - jb + KT - 1) / KT;
    const int pt_lo = __ldg(a.b.pt_off + seq), pt_n = __ldg(a.b.pt_off + seq + 1) - pt_lo;

    // Tile `it` -> staging buffer `buf`, one cp.async group (empty past the last tile: the group count
    // stays regular). Keys past jend or outside the page table become zeros.
    auto slot_of_tile = [&](int it) {  // whole pages: the tile's first row, the same for every thread
      const int j = jb + it * KT + (whole_pages ? 0 : cr);
      return it < ntiles && j < jend ? slot_at(pt, pt_lo, pt_n, page_size, j) : -1;
    };
    auto issue = [&](int slot, int buf) {
      if constexpr (FP8) {
        const uint32_t dst = s_stage + buf * kFp8StageBytes;
        if (whole_pages) {  // the tile is 64 consecutive rows of one page: 8448 contiguous bytes (16-aligned)
          const uint8_t* src = a.k_fp8 + size_t(slot >= 0 ? slot : 0) * kFp8RowB;
          for (int c = tid; c < kFp8StageBytes / 16; c += NT) cp_async16(dst + 16 * c, src + 16 * c, slot >= 0);
        } else {  // row by row in words (132 bytes: not 16-byte aligned); rows outside the table: zeros
          const uint8_t* src = a.k_fp8 + size_t(slot >= 0 ? slot : 0) * kFp8RowB;
          for (int c = cc0; c < kFp8RowB / 4; c += TPR) cp_async4(dst + cr * kFp8RowB + 4 * c, src + 4 * c, slot >= 0);
        }
        cp_async_commit();
        return;
      }
      const uint32_t dst = s_stage + buf * kStageBytes + cr * (D * 4);
      const float* src = a.k_pool + size_t(slot >= 0 ? slot : 0) * D;
#pragma unroll
      for (int k = 0; k < CPT; ++k) {
        const int c = cc0 + TPR * k;
        cp_async16(dst + c * 16, src + 4 * c, slot >= 0);
      }
      cp_async_commit();
    };
    issue(slot_of_tile(0), 0);
    issue(slot_of_tile(1), 1);
    int slot_next = slot_of_tile(2);  // the page-table load runs a tile ahead of its use

#pragma unroll 1
    for (int it = 0; it < ntiles; ++it) {
      const int buf = it & 1, j0 = jb + it * KT;
      cp_async_wait<1>();  // tile it landed (it + 1 may still be in flight)
      __syncthreads();     // ... for every thread; every warp is done with the previous tile's bf16 rows
      // ---- keys -> swizzled bf16 rows. FP8: 8 codes and the key's scale -> bf16(code x scale) (kv_bf16x8:
      // exponent arithmetic for power-of-two scales), no lo part. fp32: hi + lo, and a vote: any nonzero lo.
      bool k_lo = false;
      if constexpr (FP8) {
        const uint8_t* src = sm + buf * kFp8StageBytes;
#pragma unroll
        for (int u = tid; u < KT * (D / 8); u += NT) {
          const int r = u / (D / 8), c = u % (D / 8);
          const uint8_t* row = src + r * kFp8RowB;  // 4-byte aligned
          const uint32_t c0 = *reinterpret_cast<const uint32_t*>(row + 8 * c);
          const uint32_t c1 = *reinterpret_cast<const uint32_t*>(row + 8 * c + 4);
          *reinterpret_cast<uint4*>(khi + swz(r, c, kRowB)) =
              kv_bf16x8(c0, c1, *reinterpret_cast<const float*>(row + D));
        }
        __syncthreads();  // the bf16 tile is complete; the staging buffer is free again
      } else {
        const uint8_t* src = sm + buf * kStageBytes;
#pragma unroll
        for (int u = tid; u < KT * (D / 8); u += NT) {
          const int r = u / (D / 8), c = u % (D / 8);
          const float4 x0 = *reinterpret_cast<const float4*>(src + r * (D * 4) + c * 32);
          const float4 x1 = *reinterpret_cast<const float4*>(src + r * (D * 4) + c * 32 + 16);
          uint4 hi, lo;
          split2(x0.x, x0.y, hi.x, lo.x);
          split2(x0.z, x0.w, hi.y, lo.y);
          split2(x1.x, x1.y, hi.z, lo.z);
          split2(x1.z, x1.w, hi.w, lo.w);
          k_lo |= ((lo.x | lo.y | lo.z | lo.w) & 0x7fff7fffu) != 0;
          *reinterpret_cast<uint4*>(khi + swz(r, c, kRowB)) = hi;
          *reinterpret_cast<uint4*>(klo + swz(r, c, kRowB)) = lo;
        }
        k_lo = __syncthreads_or(k_lo);  // the bf16 tile is complete; the staging buffer is free again
      }
      issue(slot_next, buf);          // tile it + 2
      slot_next = slot_of_tile(it + 3);
      if (!mine) continue;  // uniform over the 4 warps of a query

      // ---- S = Q K^T: 16 heads x 64 keys (8 MMA tiles of 8 keys)
      float acc[KT / 8][4];
#pragma unroll
      for (int n = 0; n < KT / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
      const int kr = lr + 8 * (lm >> 1);  // key row of this lane's ldmatrix address (+16 np)
      // Forms chosen per tile (uniform): hi only when q and k have no lo parts, else the 3 MMAs per product
      // (FP8 keys never have lo parts: 2 MMAs per product at most).
      if constexpr (FP8) {
        if (q_lo) tile_scores<true, false>(acc, qh, ql, s_hi, s_lo, kr, lm, lr);
        else tile_scores<false, false>(acc, qh, ql, s_hi, s_lo, kr, lm, lr);
      } else {
        if (q_lo || k_lo) tile_scores<true, true>(acc, qh, ql, s_hi, s_lo, kr, lm, lr);
        else tile_scores<false, false>(acc, qh, ql, s_hi, s_lo, kr, lm, lr);
      }
      // ---- relu, head weights, sum over the warp's 16 heads: the thread holds keys 8 n + 2 tq (+1) of
      // heads g and g + 8; the 8 lanes of a tq add theirs.
      float v[KT / 8][2];
#pragma unroll
      for (int n = 0; n < KT / 8; ++n) {
        v[n][0] = w0 * fmaxf(acc[n][0], 0.f) + w1 * fmaxf(acc[n][2], 0.f);
        v[n][1] = w0 * fmaxf(acc[n][1], 0.f) + w1 * fmaxf(acc[n][3], 0.f);
      }
#pragma unroll
      for (int o = 4; o < 32; o <<= 1)
#pragma unroll
        for (int n = 0; n < KT / 8; ++n) {
          v[n][0] += __shfl_xor_sync(0xffffffffu, v[n][0], o);
          v[n][1] += __shfl_xor_sync(0xffffffffu, v[n][1], o);
        }
      if (g == 0) {
#pragma unroll
        for (int n = 0; n < KT / 8; ++n)
          *reinterpret_cast<float2*>(red + w * KT + 8 * n + 2 * tq) = make_float2(v[n][0], v[n][1]);
      }
      // The query's 4 warps (named barrier 1 + qi, 128 threads): their partials are in `red`. The next
      // writes to `red` come after the next tile's __syncthreads.
      asm volatile("bar.sync %0, 128;\n" ::"r"(1 + qi) : "memory");
      const int lt = tid - 128 * qi;
      if (lt < KT && j0 + lt <= my_p) {
        const float* r = red + 4 * qi * KT + lt;
        a.scores[size_t(my_tc) * a.L + j0 + lt] = (r[0] + r[KT]) + (r[2 * KT] + r[3 * KT]);
      }
    }
    cp_async_wait_all();  // the empty trailing groups; nothing is in flight past a pass
  }
}
}  // namespace

bool indexer_tc_supported(int heads, int head_dim) { return head_dim == D && heads > 0 && heads <= MaxHeads; }

bool indexer_tc_takes_fp8(int row_bytes) { return row_bytes == kFp8RowB; }

int indexer_tc_queries_per_block(int Tc) { return Tc > 128 ? 2 : 1; }

void launch_indexer_scores_tc(const IndexerArgs& a, cudaStream_t st) {
  if (a.Tc == 0) return;
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [&] {
    cudaFuncSetAttribute(score_tc_kernel<1, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(tc_smem_bytes<1, false>()));
    cudaFuncSetAttribute(score_tc_kernel<2, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(tc_smem_bytes<2, false>()));
    cudaFuncSetAttribute(score_tc_kernel<1, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(tc_smem_bytes<1, true>()));
    cudaFuncSetAttribute(score_tc_kernel<2, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(tc_smem_bytes<2, true>()));
  });
  const int qb = indexer_tc_queries_per_block(a.Tc);
  const dim3 grid(unsigned((a.L + KT * a.tiles - 1) / (KT * a.tiles)), unsigned((a.Tc + qb - 1) / qb));
  if (a.k_fp8) {
    if (qb == 2) launch_k(score_tc_kernel<2, true>, grid, 2 * 128, tc_smem_bytes<2, true>(), st, a);
    else launch_k(score_tc_kernel<1, true>, grid, 128, tc_smem_bytes<1, true>(), st, a);
  } else if (qb == 2) {
    launch_k(score_tc_kernel<2, false>, grid, 2 * 128, tc_smem_bytes<2, false>(), st, a);
  } else {
    launch_k(score_tc_kernel<1, false>, grid, 128, tc_smem_bytes<1, false>(), st, a);
  }
}

}  // namespace ds::backend::cuda
