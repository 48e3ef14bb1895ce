// Absorbed sparse MLA attention on Hopper wgmma in pairs of key blocks: FlashMLA's sparse-prefill schedule
// (its README's ~640 TFLOP/s on an H800) with the numerics of k_mla_wgmma.cu (the fp32 query rounded once to
// bf16, bf16 keys, the softmax weights P rounded to bf16, fp32 accumulation and fp32 online softmax). Same
// op, grid, split-K partials and key-list rule as launch_mla_wgmma; DSSERVE_MLA_KERNEL=wgmma-pair pins it.
//
// Why: in k_mla_wgmma.cu warpgroup 0 computes every score and the softmax while warpgroup 1 only does half
// of P V, so the tensor cores idle through each step's softmax. Here each step takes two blocks of 64 keys,
// A in key buffer 0 and B in buffer 1, the two consumer warpgroups a half step apart (FlashMLA's seesaw):
//   warpgroup 0: S_A = Q K_A^T (issued at the end of the last pair); its softmax at its own max m_A (P_A,
//     m_A published, P_A into buffer 0's rope tile); O_l += P_A V_A[:, left] (P from registers); once
//     warpgroup 1 has published the pair's max M, O_l rescaled to M; O_l += P_B V_B[:, left] (P_B from
//     shared memory); then S_A of the next pair;
//   warpgroup 1: S_B = Q K_B^T, issued while warpgroup 0 does its softmax; O_r rescaled to m_A and
//     O_r += P_A V_A[:, right] (P_A from shared memory: P_A V_A needs no M, so it runs beside the softmax of
//     B); M = max(m_A, rowmax S_B) published; O_r rescaled to M; P_B to shared memory; O_r += P_B V_B[:, right].
// Buffer 0 is free once both P_A V_A halves are done, early in the pair, so its refill overlaps the rest of
// it and S_A of the next pair can follow P_B V_B at once. The running max is one value for both (each pair
// ends at M in both warpgroups); each warpgroup sums the weights of its own block; the sums are added at the
// end. (Session 23's first form ran the warpgroups in phase: both softmaxes in the same window, and each
// next S behind a refill; 8% slower than the one-block form in the model, docs/PERF.md session 24.)
//
// Key buffers are refilled by halves as they free up (the producer warpgroup, in that order: A left, A
// right, B left, B right; "left" = V columns [0, Dl/2) = the first Dl/128 tiles, "right" = the rest of the
// row, rope columns included), each half with a ready and a free mbarrier. P_A goes into buffer 0's rope
// tile (read only by S_A, which is done by then; the producer refills it only after warpgroup 1's
// P_A V_A[:, right]), P_B into a tile of its own (rewritten once warpgroup 0's P_B V_B[:, left] of the last
// pair is done: buffer 1's left-half free barrier): Q 72 KB + two key buffers of 72 KB + 8 KB (D = 576), one
// block per SM. Unmeasured on a GPU in this form (session 24; its checks: gpu_ops_check mla).
//
// The list ends at its first negative entry (as in k_mla_wgmma.cu): the producer finds it first (one pass
// over the slice's positions, beside the consumers' query load) and publishes the number of pairs; keys at or
// past it, and positions past the sequence's page table, are masked (score -inf, rows zero-filled, so a
// pair's B block past the end costs its MMAs but adds exactly zero).
#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/mla_phase_clock.cuh"
#include "backend/cuda/mla_wgmma_common.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/per_device.h"
#include "backend/cuda/sync_sm90.cuh"
#include "backend/cuda/wgmma_bf16.cuh"

namespace ds::backend::cuda {

namespace {
using namespace mla_wgmma;    // HB, KS, kTile; the query load, the scores' mask, the output rows
constexpr int NTH = 3 * 128;  // two consumer warpgroups + the producer warpgroup
constexpr int kRegsConsumer = 224, kRegsProducer = 56;  // 2 x 224 + 56 = 504 <= 512 (see k_mla_wgmma.cu)
// The running max before any key: finite, so that exp2(old - new) is never inf - inf; a row that never sees
// a key keeps it and its weight sum 0 (its output is 0, its partial max -inf).
constexpr float kMaxInit = -1e30f;
// Named barriers (0 is __syncthreads). The consumers' (256 threads): the query tiles are in; M published
// (1 -> 0); P_A and m_A in shared memory (0 -> 1); P_B in shared memory (1 -> 0); the row sums are in. The
// producer's (128 threads): the list's end is known.
constexpr int kBarQ = 1, kBarMax = 3, kBarPA = 4, kBarPB = 5, kBarEnd = 6, kBarProducer = 7;

// Byte offsets in the (1024-aligned) shared memory.
template <int D>
struct PairPlan {
  static constexpr int NT = D / 64;  // column tiles per row
  static constexpr int q = 0;
  static constexpr int k = NT * kTile;           // key buffers [2][NT tiles]
  static constexpr int pb = k + 2 * NT * kTile;  // P_B [64 x 64] bf16: one tile
  static constexpr int ring = pb + kTile;        // int [2][64]: pool row of each key, -1 masked
  static constexpr int smax = ring + 2 * KS * 4;  // float [64]: m_A, then M (log2 units)
  static constexpr int lsum = smax + HB * 4;      // float [2][64]: each warpgroup's row sums at the end
  static constexpr int misc = lsum + 2 * HB * 4;  // int: the list's end, the number of pairs
  static constexpr int bars = misc + 16;          // uint64: ready[buffer][half], free[buffer][half], meta
#ifdef DSSERVE_MLA_PHASES
  static constexpr int phase = bars + 9 * 8;  // the diagnostic build's cycle counters (mla_phase_clock.cuh)
  static constexpr int bytes = phase + mla_phases::kSmemBytes;
#else
  static constexpr int bytes = bars + 9 * 8;
#endif
  static constexpr int alloc = bytes + 1024;  // + alignment of the dynamic base
};
static_assert(PairPlan<576>::alloc <= kMaxSmem, "shared memory");
static_assert(PairPlan<576>::bars % 8 == 0, "mbarrier alignment");

// A range of 16-byte chunks of a key row, as a type (the producer's copies are unrolled over it).
template <int C0, int C1>
struct ChunkRange {
  static constexpr int first = C0, second = C1;
};

// S (64 heads x 64 keys, fp32) over column tiles [t0, t1) of the query and of key buffer kb; the first
// k-step overwrites (first) or accumulates. Shared addresses stay below 2^18, so a descriptor plus
// (offset >> 4) is the descriptor of the address plus offset.
template <int T0, int T1>
__device__ __forceinline__ void issue_scores(float (&sc)[32], uint32_t q_base, uint32_t kb, bool first) {
  const uint64_t dq = wgmma_desc_sw128(q_base), dk = wgmma_desc_sw128(kb);
#pragma unroll
  for (int k = 4 * T0; k < 4 * T1; ++k) {
    const uint32_t off = ((k >> 2) * kTile + (k & 3) * 32) >> 4;
    wgmma_m64n64k16_bf16_ss(sc, dq + off, dk + off, (first && k == 4 * T0) ? 0 : 1);
  }
}

// O (64 x NH) += P (64 x 64 keys) . V (64 keys x NH columns starting at tile vt of key buffer kb), P from
// registers (the m16n8k16 A fragments pf) or from a swizzled shared tile at p_tile.
template <int NH, int NO>
__device__ __forceinline__ void issue_pv_regs(float (&o)[NO], const uint32_t (&pf)[16], uint32_t kb_v) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint32_t pa[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
    const uint64_t db = wgmma_desc_sw128_mn(kb_v + kk * 16 * 128, kTile, 8 * 128);
    if constexpr (NH == 256) wgmma_m64n256k16_bf16_rs_tb(o, pa, db, 1);
    else wgmma_m64n128k16_bf16_rs_tb(o, pa, db, 1);
  }
}
template <int NH, int NO>
__device__ __forceinline__ void issue_pv_smem(float (&o)[NO], uint32_t p_tile, uint32_t kb_v) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t da = wgmma_desc_sw128(p_tile + kk * 32);
    const uint64_t db = wgmma_desc_sw128_mn(kb_v + kk * 16 * 128, kTile, 8 * 128);
    if constexpr (NH == 256) wgmma_m64n256k16_bf16_ss_tb(o, da, db, 1);
    else wgmma_m64n128k16_bf16_ss_tb(o, da, db, 1);
  }
}

// P = exp2(s - m) in place (0 for masked keys), its bf16 A fragments, and the rows' sums of the fp32 values.
__device__ __forceinline__ void softmax_weights(float (&sc)[32], const float (&m)[2], uint32_t (&pf)[16],
                                                float (&l)[2]) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const float p0 = exp2f(sc[4 * j + 2 * rr] - m[rr]), p1 = exp2f(sc[4 * j + 2 * rr + 1] - m[rr]);
      sc[4 * j + 2 * rr] = p0, sc[4 * j + 2 * rr + 1] = p1;
      l[rr] += p0 + p1;
      pf[4 * (j >> 1) + 2 * (j & 1) + rr] = pack_bf16(p0, p1);
    }
}

// P (this thread's fragments, times f per row) into a swizzled [64 x 128 B] tile: row r, keys 8j + 2tq (+1)
// at chunk j ^ (r % 8) (r % 8 = g): conflict-free.
__device__ __forceinline__ void store_p(uint8_t* tile, const float (&p)[32], const float (&f)[2], int row0, int g,
                                        int tq) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
      *reinterpret_cast<uint32_t*>(tile + (row0 + 8 * rr) * 128 + ((j ^ g) << 4) + 4 * tq) =
          pack_bf16(p[4 * j + 2 * rr] * f[rr], p[4 * j + 2 * rr + 1] * f[rr]);
}

template <int NO>
__device__ __forceinline__ void rescale(float (&o)[NO], const float (&f)[2]) {
  if (__all_sync(0xffffffffu, f[0] == 1.f && f[1] == 1.f)) return;  // most pairs raise no row's max
#pragma unroll
  for (int i = 0; i < NO; ++i) o[i] *= f[(i >> 1) & 1];
}

MLA_PHASE_COUNTERS;  // the diagnostic build's (mla_phase_clock.cuh)

template <int D, int DL>
__global__ void __launch_bounds__(NTH, 1) mla_wgmma_pair_kernel(const MlaArgs a) {
  using P = PairPlan<D>;
  constexpr int NT = P::NT, NV = DL / 64, NL = NV / 2, NH = DL / 2, NO = NH / 2;
  constexpr int rowb = D * 2, nch = D / 8, lch = NL * 8;  // row bytes, 16-byte chunks per row, left chunks
  static_assert(D % 64 == 0 && DL % 128 == 0 && NT > NV && (NH == 256 || NH == 128), "widths");
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023u) & ~1023u;
  uint8_t* const sm = smem_raw + (base - raw);
  int* const ring = reinterpret_cast<int*>(sm + P::ring);
  float* const s_max = reinterpret_cast<float*>(sm + P::smax);
  float* const s_l = reinterpret_cast<float*>(sm + P::lsum);
  int* const s_end = reinterpret_cast<int*>(sm + P::misc);
  int* const s_npairs = s_end + 1;
  const uint32_t bars = base + P::bars;
  auto bar_ready = [&](int buf, int half) { return bars + 8 * (2 * buf + half); };
  auto bar_free = [&](int buf, int half) { return bars + 32 + 8 * (2 * buf + half); };
  const uint32_t bar_meta = bars + 64;
  const uint32_t kbuf0 = base + P::k, kbuf1 = kbuf0 + NT * kTile;

  const int split = blockIdx.x, h0 = blockIdx.y * HB, t = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // This split's keys: whole blocks of 64 (the host's nsplit rule assumes the same chunking).
  const int chunk = ((a.K + a.nsplit - 1) / a.nsplit + KS - 1) / KS * KS;
  const int j_begin = split * chunk, j_end = min(a.K, j_begin + chunk);

  if (tid == 0) {
    for (int b = 0; b < 2; ++b)
      for (int h = 0; h < 2; ++h) {
        mbar_init(bar_ready(b, h), 256);  // 128 producer arrivals + 128 cp.async completions
        mbar_init(bar_free(b, h), 4);     // lane 0 of each warp of the warpgroup that reads the half last
      }
    mbar_init(bar_meta, 1);
    *s_end = j_end;
  }
  __syncthreads();
  pdl_prologue();  // the barriers are set up while the kernel before finishes

  if (warp >= 8) {
    // ---------------- producer warpgroup
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegsProducer));
    MLA_PHASE_CLOCK(MLA_PHASE_SMEM, 2, warp == 8 && lane == 0);
    const int pt = tid - 256;
    const int32_t* idx = a.index + size_t(t) * a.K;
    // The list's end: its first negative entry in [j_begin, j_end). Each thread's 16 loads of a round are
    // issued together (no early exit between them: a loop that stopped at the first hit made them 16
    // dependent round trips before the first gather, ~8% of an 8K prefill chunk).
    int first = j_end;
    for (int base = j_begin; base < j_end && first == j_end; base += 128 * 16) {
      int v[16];
#pragma unroll
      for (int u = 0; u < 16; ++u) {
        const int j = base + 16 * pt + u;
        v[u] = j < j_end ? __ldg(idx + j) : 0;
      }
#pragma unroll
      for (int u = 15; u >= 0; --u)
        if (v[u] < 0) first = base + 16 * pt + u;
    }
    if (first < j_end) atomicMin(s_end, first);
    named_bar_sync<kBarProducer, 128>();
    const int end_j = *s_end;
    const int npairs = (end_j - j_begin + 2 * KS - 1) / (2 * KS);
    if (pt == 0) {
      *s_npairs = npairs;
      mbar_arrive(bar_meta);  // release: the consumers read s_npairs after their wait
    }
    // Lane l of warp pw looks up key 16 pw + (l % 16) of block l / 16 (A, B); copying, a warp moves its 16 rows
    // of each block, a row's 16-byte chunks over the lanes.
    const int pw = warp - 8, blk = lane >> 4, key = 16 * pw + (lane & 15);
    const int seq = a.b.seq_of_token[t];
    const int pt_lo = a.b.pt_off[seq], pt_n = a.b.pt_off[seq + 1] - pt_lo, ps = a.b.page_size;
    const uint8_t* pool = static_cast<const uint8_t*>(a.pool);
    auto pos_at = [&](int i) {
      const int j = j_begin + (2 * i + blk) * KS + key;
      return j < end_j ? __ldg(idx + j) : -1;
    };
    // Chunks [C0, C1) of the 16 rows of block `b` this warp copies into buffer kb (row r, chunk c: tile c / 8,
    // swizzled chunk (c % 8) ^ (r % 8)); masked rows are zero-filled. Unrolled with the chunk range known at
    // compile time, as k_mla_wgmma.cu's producer: a runtime chunk loop made the gathers issue ~2.8x slower per
    // byte, and the producer the pair form's bottleneck (docs/PERF.md session 25).
    auto copy_rows = [&](int myrow, int b, uint32_t kb, auto c0_c1) {
      constexpr int C0 = decltype(c0_c1)::first, C1 = decltype(c0_c1)::second;
      static_assert(C0 % 8 == 0, "chunk ranges start at a tile boundary (c % 8 = lane % 8)");
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int r = 16 * pw + i;
        const int pr = __shfl_sync(0xffffffffu, myrow, 16 * b + i);
        const bool ok = pr >= 0;
        const uint8_t* src = pool + (ok ? size_t(pr) * rowb : 0) + lane * 16;
        const uint32_t dst = kb + r * 128 + (((lane & 7) ^ (i & 7)) << 4) + (lane >> 3) * kTile;
#pragma unroll
        for (int c0 = C0; c0 < C1; c0 += 32)
          if (c0 + lane < C1) cp_async16(dst + (c0 / 8) * kTile, src + (ok ? c0 * 16 : 0), ok);
      }
    };
    constexpr ChunkRange<0, lch> left{};
    constexpr ChunkRange<lch, nch> right{};
    int pn = npairs > 0 ? pos_at(0) : -1;
    clk.mark(mla_phases::kOutside);  // the list's end
    for (int i = 0; i < npairs; ++i) {
      const int p = pn;
      if (i + 1 < npairs) pn = pos_at(i + 1);
      int myrow = -1;
      if (p >= 0) {
        const int pg = p / ps;
        myrow = pg < pt_n ? __ldg(a.b.pt + pt_lo + pg) * ps + (p - pg * ps) : -1;
      }
      const uint32_t fpar = (i - 1) & 1;  // the free phases of the previous pair
      clk.mark(0);  // positions -> pool rows
      // A left (free once warpgroup 0's P_A V_A[:, left] is done)
      if (i > 0) mbar_wait(bar_free(0, 0), fpar);
      clk.mark(1);
      copy_rows(myrow, 0, kbuf0, left);
      mbar_arrive(bar_ready(0, 0));
      mbar_arrive_cp_async(bar_ready(0, 0));
      // A right, with A's ring (S_A waits for this half last; free once warpgroup 1's P_A V_A[:, right] is done)
      clk.mark(2);
      if (i > 0) mbar_wait(bar_free(0, 1), fpar);
      clk.mark(1);
      if (blk == 0) ring[key] = myrow;
      copy_rows(myrow, 0, kbuf0, right);
      mbar_arrive(bar_ready(0, 1));
      mbar_arrive_cp_async(bar_ready(0, 1));
      // B left (free once warpgroup 0's P_B V_B[:, left] is done)
      clk.mark(2);
      if (i > 0) mbar_wait(bar_free(1, 0), fpar);
      clk.mark(1);
      copy_rows(myrow, 1, kbuf1, left);
      mbar_arrive(bar_ready(1, 0));
      mbar_arrive_cp_async(bar_ready(1, 0));
      // B right, with B's ring (S_B waits for this half last)
      clk.mark(2);
      if (i > 0) mbar_wait(bar_free(1, 1), fpar);
      clk.mark(1);
      if (blk == 1) ring[KS + key] = myrow;
      copy_rows(myrow, 1, kbuf1, right);
      mbar_arrive(bar_ready(1, 1));
      mbar_arrive_cp_async(bar_ready(1, 1));
      clk.mark(2);  // issuing the gathers
      clk.step();
    }
    cp_async_wait_all();  // no copy outlives the block
    MLA_PHASE_FLUSH(MLA_PHASE_TOTAL, 2);
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegsConsumer));
  MLA_PHASE_CLOCK(MLA_PHASE_SMEM, warp >> 2, (warp & 3) == 0 && lane == 0);

  // ---------------- consumers: Q -> bf16, swizzled tiles
  load_query_tiles<D>(a, sm + P::q, t, h0, tid);
  fence_proxy_async_smem();
  named_bar_sync<kBarQ, 256>();
  mbar_wait(bar_meta, 0);
  const int npairs = *s_npairs;

  const int wg = warp >> 2, w4 = warp & 3, g = lane >> 2, tq = lane & 3;
  const int row0 = 16 * w4 + g;  // this thread's rows: row0, row0 + 8
  const float sl2 = a.scale * kLog2e;  // scores in log2 units: exp2 below
  const uint32_t qb = base + P::q;
  uint8_t* const pa_tile = sm + P::k + NV * kTile;  // P_A: buffer 0's (first) rope tile
  uint8_t* const pb_tile = sm + P::pb;
  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; ++i) o[i] = 0.f;
  float m_run[2] = {kMaxInit, kMaxInit}, l_run[2] = {0.f, 0.f};
  float sc[32];
  uint32_t pf[16];

  const float one[2] = {1.f, 1.f};
  if (wg == 0) {
    // ---------------- warpgroup 0: block A (buffer 0), O[:, 0:NH]
    if (npairs > 0) {
      clk.mark(mla_phases::kOutside);
      mbar_wait(bar_ready(0, 0), 0);
      clk.mark(0);
      fence_proxy_async_smem();  // the cp.async bytes, seen through this thread's acquire, for the tensor cores
      wgmma_fence();
      issue_scores<0, NL>(sc, qb, kbuf0, true);
      clk.mark(1);
      mbar_wait(bar_ready(0, 1), 0);
      clk.mark(0);
      fence_proxy_async_smem();
      wgmma_fence();  // the accumulators are live across the wait
      issue_scores<NL, NT>(sc, qb, kbuf0, false);
      wgmma_commit();
      clk.mark(1);
      wgmma_wait<0>();
      reg_fence(sc);
      clk.mark(2);
    }
    for (int i = 0; i < npairs; ++i) {
      // softmax of block A at its own max m_A (warpgroup 1 scores block B meanwhile)
      float mx[2], m_a[2], f[2];
      mask_scores(sc, ring, sl2, tq, mx);
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        m_a[r] = fmaxf(m_run[r], mx[r]);
        f[r] = exp2f(m_run[r] - m_a[r]);
        l_run[r] *= f[r];
      }
      rescale(o, f);
      clk.mark(3);  // masked scores, maxima, O rescaled
      softmax_weights(sc, m_a, pf, l_run);
      clk.mark(4);  // weights P_A
      // P_A (scale m_A) into buffer 0's rope tile, which S_A is done with, and m_A, for warpgroup 1
      store_p(pa_tile, sc, one, row0, g, tq);
      __syncwarp();  // every lane of the quad has read the last pair's M before m_A replaces it
      if (tq == 0) s_max[row0] = m_a[0], s_max[row0 + 8] = m_a[1];
      fence_proxy_async_smem();
      named_bar_arrive<kBarPA, 256>();
      clk.mark(5);  // P_A to shared memory
      reg_fence(o);
      wgmma_fence();
      issue_pv_regs<NH>(o, pf, kbuf0);  // O_l += P_A V_A[:, left], at scale m_A
      wgmma_commit();
      clk.mark(6);  // issuing P_A V_A
      named_bar_sync<kBarMax, 256>();  // warpgroup 1 published the pair's max M
      clk.mark(7);  // waiting for warpgroup 1's max
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float M = s_max[row0 + 8 * r];
        f[r] = exp2f(m_a[r] - M);
        m_run[r] = M;
        l_run[r] *= f[r];
      }
      wgmma_wait<0>();
      reg_fence(o);
      clk.mark(8);  // waiting for P_A V_A
      if (lane == 0) mbar_arrive(bar_free(0, 0));  // buffer 0's left half is free
      rescale(o, f);                                // O_l to scale M
      clk.mark(9);  // O rescaled to M
      named_bar_sync<kBarPB, 256>();                // P_B (scale M) is in its tile
      clk.mark(10);  // waiting for warpgroup 1's P_B
      reg_fence(o);
      wgmma_fence();
      issue_pv_smem<NH>(o, smem_addr(pb_tile), kbuf1);  // O_l += P_B V_B[:, left]
      wgmma_commit();
      clk.mark(11);  // issuing P_B V_B
      if (i + 1 < npairs) {  // S_A of the next pair, its halves as they arrive
        const uint32_t rpar = (i + 1) & 1;
        mbar_wait(bar_ready(0, 0), rpar);
        clk.mark(0);
        fence_proxy_async_smem();
        reg_fence(sc);
        wgmma_fence();
        issue_scores<0, NL>(sc, qb, kbuf0, true);
        wgmma_commit();
        clk.mark(1);
        wgmma_wait<1>();  // P_B V_B[:, left] done: buffer 1's left half (and P_B's tile) is free
        reg_fence(o);
        clk.mark(12);  // waiting for P_B V_B
        if (lane == 0) mbar_arrive(bar_free(1, 0));
        mbar_wait(bar_ready(0, 1), rpar);
        clk.mark(0);
        fence_proxy_async_smem();
        wgmma_fence();
        issue_scores<NL, NT>(sc, qb, kbuf0, false);
        wgmma_commit();
        clk.mark(1);
        wgmma_wait<0>();
        reg_fence(sc);
        clk.mark(2);  // waiting for S_A
      } else {
        wgmma_wait<0>();
        reg_fence(o);
        if (lane == 0) mbar_arrive(bar_free(1, 0));
      }
      clk.step();
    }
  } else {
    // ---------------- warpgroup 1: block B (buffer 1), O[:, NH:DL]
    clk.mark(mla_phases::kOutside);
    for (int i = 0; i < npairs; ++i) {
      const uint32_t rpar = i & 1;
      mbar_wait(bar_ready(1, 0), rpar);
      clk.mark(0);  // waiting for block B's keys
      fence_proxy_async_smem();
      reg_fence(sc);
      wgmma_fence();
      issue_scores<0, NL>(sc, qb, kbuf1, true);
      clk.mark(1);  // issuing S_B
      mbar_wait(bar_ready(1, 1), rpar);
      clk.mark(0);
      fence_proxy_async_smem();
      wgmma_fence();
      issue_scores<NL, NT>(sc, qb, kbuf1, false);
      wgmma_commit();
      clk.mark(1);
      // P_A at its scale m_A: O_r to that scale, O_r += P_A V_A[:, right] beside the softmax of B. (O_r is
      // rescaled once S_B is done: with an MMA in flight, ptxas would insert a wait before touching O anyway.)
      named_bar_sync<kBarPA, 256>();
      clk.mark(2);  // waiting for warpgroup 0's P_A
      float m_a[2], f[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        m_a[r] = s_max[row0 + 8 * r];
        f[r] = exp2f(m_run[r] - m_a[r]);
        l_run[r] *= f[r];
      }
      wgmma_wait<0>();  // S_B done
      reg_fence(sc);
      reg_fence(o);
      clk.mark(3);  // waiting for S_B
      rescale(o, f);
      reg_fence(o);
      wgmma_fence();
      issue_pv_smem<NH>(o, smem_addr(pa_tile), kbuf0 + NL * kTile);  // O_r += P_A V_A[:, right]
      wgmma_commit();
      clk.mark(4);  // O rescaled, issuing P_A V_A
      // the pair's max M = max(m_A, rowmax S_B), published; P_B at scale M
      float mx[2], M[2];
      mask_scores(sc, ring + KS, sl2, tq, mx);
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        M[r] = fmaxf(m_a[r], mx[r]);
        f[r] = exp2f(m_a[r] - M[r]);
        m_run[r] = M[r];
        l_run[r] *= f[r];
      }
      __syncwarp();  // every lane of the quad has read m_A before the max is replaced
      if (tq == 0) s_max[row0] = M[0], s_max[row0 + 8] = M[1];
      named_bar_arrive<kBarMax, 256>();
      clk.mark(5);  // masked scores, the pair's max published
      softmax_weights(sc, M, pf, l_run);
      clk.mark(6);  // weights P_B
      wgmma_wait<0>();
      reg_fence(o);
      clk.mark(7);  // waiting for P_A V_A
      if (lane == 0) mbar_arrive(bar_free(0, 1));  // P_A V_A[:, right] done: buffer 0's right half is free
      rescale(o, f);                                // O_r to scale M
      clk.mark(8);  // O rescaled to M
      if (i > 0) mbar_wait(bar_free(1, 0), (i - 1) & 1);  // warpgroup 0 is done with the last pair's P_B
      clk.mark(9);  // waiting for warpgroup 0 to free P_B's tile
      store_p(pb_tile, sc, one, row0, g, tq);
      fence_proxy_async_smem();
      named_bar_arrive<kBarPB, 256>();
      clk.mark(10);  // P_B to shared memory
      reg_fence(o);
      wgmma_fence();
      issue_pv_regs<NH>(o, pf, kbuf1 + NL * kTile);  // O_r += P_B V_B[:, right]
      wgmma_commit();
      clk.mark(11);  // issuing P_B V_B
      wgmma_wait<0>();
      reg_fence(o);
      clk.mark(12);  // waiting for P_B V_B
      if (lane == 0) mbar_arrive(bar_free(1, 1));
      clk.step();
    }
  }

  // ---------------- epilogue: row sums of both warpgroups; rows row0, row0 + 8, columns wg * NH + 8j + 2tq (+1)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
  if (tq == 0) s_l[wg * HB + row0] = l_run[0], s_l[wg * HB + row0 + 8] = l_run[1];
  named_bar_sync<kBarEnd, 256>();
  float L[2], m[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    L[rr] = s_l[row0 + 8 * rr] + s_l[HB + row0 + 8 * rr];
    m[rr] = L[rr] > 0.f ? m_run[rr] * kLn2 : -INFINITY;  // natural-log max; -inf where no key was seen
  }
  store_output_rows<DL, NH>(a, o, split, t, h0, row0, wg * NH, tq, L, m, wg == 0 && tq == 0);
  MLA_PHASE_FLUSH(MLA_PHASE_TOTAL, wg);
}
}  // namespace

MLA_PHASE_TOTALS_FN(mla_wgmma_pair_phase_totals)

void launch_mla_wgmma_pair(const MlaArgs& a, cudaStream_t st) {
  if (a.T == 0 || a.H == 0) return;
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [&] {
    cudaFuncSetAttribute(mla_wgmma_pair_kernel<576, 512>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         PairPlan<576>::alloc);
    cudaFuncSetAttribute(mla_wgmma_pair_kernel<320, 256>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         PairPlan<320>::alloc);
  });
  const dim3 grid(unsigned(a.nsplit), unsigned((a.H + HB - 1) / HB), unsigned(a.T));
  if (a.D == 576) launch_k(mla_wgmma_pair_kernel<576, 512>, grid, NTH, PairPlan<576>::alloc, st, a);
  else launch_k(mla_wgmma_pair_kernel<320, 256>, grid, NTH, PairPlan<320>::alloc, st, a);
}

}  // namespace ds::backend::cuda
