// Absorbed sparse MLA attention on Hopper warpgroup MMAs (wgmma, sm_90a), BF16 latent pools, for the fast
// mode's many-query launches (prefill chunks). Same op and split-K partials as k_mla_tc.cu; FlashMLA's
// numerics: the fp32 query rounded once to bf16, bf16 keys (exact: the pool's values), the softmax weights P
// rounded to bf16, fp32 accumulation and fp32 online softmax (row sums from the unrounded weights).
//
// Block: one token, 64 heads (wgmma M), a slice of its key list, in steps of 64 keys; 384 threads:
//   warpgroup 0 (warps 0-3): S = Q K^T over all D columns (36 x m64n64k16, both operands in shared memory),
//     the masked online softmax in registers, P to shared memory for warpgroup 1, then
//     O[:, 0:Dl/2] += P V (4 x m64n256k16, P from registers, V read MN-major from the same key tile);
//   warpgroup 1 (warps 4-7): O[:, Dl/2:Dl] += P V (P from shared memory), its rows rescaled by the
//     factors warpgroup 0 publishes; it runs a step behind, beside warpgroup 0's next S;
//   warpgroup 2, the producer (56 registers, setmaxnreg; the consumers get 224): positions -> pool rows
//     through the page table, cp.async of the 64 rows of a step (16 per warp) into one of two key buffers,
//     completion on that buffer's "full" mbarrier.
// O is 64 x Dl fp32 = 128 registers per thread in each consumer warpgroup; the split by columns is what
// fits. Why one warpgroup computes all of S: with N = 64 keys each k-step reads as many bytes of shared
// memory (A 2 KB + B 2 KB) as the tensor cores need cycles, the balance point; two warpgroups of 32 keys
// each would read Q twice per step (3 KB per 1/2 the work).
//
// Shared memory (D = 576): Q bf16 72 KB, two key buffers of 64 x 576 bf16 (72 KB each), P 8 KB, the pool
// rows of each buffer (the ring), rescale factors, row sums, 4 mbarriers: 226 KB, one block per SM. Every
// operand tile is [64 rows x 128 bytes] (64 columns) in the 128-byte swizzle, 8 KB, tiles of one buffer
// 8 KB apart: the same bytes are the K-major B of S (keys x columns) and the MN-major B of P V (descriptor:
// 64-column blocks 8 KB apart, groups of 8 keys 1 KB apart).
//
// Pipeline (buffer b = step % 2; phase parity = (step / 2) % 2):
//   producer: rows of step s (before waiting) -> wait empty[b] (s >= 2) -> ring[b] + arrive full[b] ->
//     cp.async rows -> arrive full[b] on completion (noinc). Stops after a step whose first key ends the list.
//   wg0: wait full[b] -> S(s) issue -> wait PV(s-1) -> arrive empty[b^1] -> wait S -> softmax ->
//     [P_FREE] -> P, factors to shared memory -> P_READY -> rescale O -> PV(s) issue (no wait).
//   wg1: wait full[b] -> [P_READY] -> rescale O -> PV(s), wait -> arrive empty[b] -> P_FREE.
// So buffer b is refilled while the other buffer's step runs: the gathers of step s + 2 overlap step s + 1.
// Keys: the list ends at its first negative entry (the producer marks the rest -2; a step whose first key
// is -2 ends the loop for all three roles, who read the same ring word); positions past the sequence's page
// table are masked (-1: score -inf, their rows zero-filled so that 0 x row stays 0).
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
// Registers: a kernel with wgmma is given registers per warpgroup, so 384 threads start at 168 each; the
// producer gives most of its share to the consumers (O alone is 128 per thread): 2 x 224 + 56 = 504 <= 512.
constexpr int kRegsConsumer = 224, kRegsProducer = 56;
// Named barriers (0 is __syncthreads), 256 threads: the two consumer warpgroups.
constexpr int kBarQ = 1, kBarPReady = 2, kBarPFree = 3, kBarEnd = 4;

// Byte offsets in the (1024-aligned) shared memory.
template <int D>
struct Plan {
  static constexpr int NT = D / 64;  // column tiles per row
  static constexpr int q = 0;
  static constexpr int k = NT * kTile;           // key buffers [2][NT tiles]
  static constexpr int p = k + 2 * NT * kTile;   // P [64 x 64] bf16: one tile
  static constexpr int ring = p + kTile;         // int [2][64]: pool row, -1 masked, -2 past the list's end
  static constexpr int alpha = ring + 2 * KS * 4;  // float [64]: this step's rescale factors
  static constexpr int lsum = alpha + HB * 4;      // float [64]: row sums at the end
  static constexpr int mmax = lsum + HB * 4;       // float [64]: row maxima (log2 units) at the end
  static constexpr int bars = mmax + HB * 4;       // uint64 full[2], empty[2]
#ifdef DSSERVE_MLA_PHASES
  static constexpr int phase = bars + 32;  // the diagnostic build's cycle counters (mla_phase_clock.cuh)
  static constexpr int bytes = phase + mla_phases::kSmemBytes;
#else
  static constexpr int bytes = bars + 32;
#endif
  static constexpr int alloc = bytes + 1024;       // + alignment of the dynamic base
};
static_assert(Plan<576>::alloc <= kMaxSmem, "shared memory");

MLA_PHASE_COUNTERS;  // the diagnostic build's (mla_phase_clock.cuh)

template <int D, int DL>
__global__ void __launch_bounds__(NTH, 1) mla_wgmma_kernel(const MlaArgs a) {
  using P = Plan<D>;
  constexpr int NT = P::NT, NH = DL / 2, NO = NH / 2;  // NO: accumulators per thread (64 x NH / 128)
  constexpr int rowb = D * 2, nch = D / 8;                // pool row bytes, 16-byte chunks per row
  static_assert(D % 64 == 0 && DL % 128 == 0 && DL < D && (NH == 256 || NH == 128), "widths");
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023u) & ~1023u;
  uint8_t* const sm = smem_raw + (base - raw);
  int* const ring = reinterpret_cast<int*>(sm + P::ring);
  float* const s_alpha = reinterpret_cast<float*>(sm + P::alpha);
  float* const s_l = reinterpret_cast<float*>(sm + P::lsum);
  float* const s_m = reinterpret_cast<float*>(sm + P::mmax);
  const uint32_t bar_full = base + P::bars, bar_empty = bar_full + 16;  // [b] at + 8 b

  const int split = blockIdx.x, h0 = blockIdx.y * HB, t = blockIdx.z;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // This split's keys: whole steps (the host's nsplit rule assumes the same chunking).
  const int chunk = ((a.K + a.nsplit - 1) / a.nsplit + KS - 1) / KS * KS;
  const int j_begin = split * chunk, j_end = min(a.K, j_begin + chunk);
  const int nsteps = j_end > j_begin ? (j_end - j_begin + KS - 1) / KS : 0;

  if (tid == 0) {
    mbar_init(bar_full, 256), mbar_init(bar_full + 8, 256);  // 128 ring writers + 128 cp.async completions
    mbar_init(bar_empty, 8), mbar_init(bar_empty + 8, 8);  // lane 0 of each consumer warp
  }
  __syncthreads();
  pdl_prologue();  // the barriers are set up while the kernel before finishes

  if (warp >= 8) {
    // ---------------- producer warpgroup: warp pw gathers keys 16 pw .. 16 pw + 15 of each step. Every warp
    // reads the step's 64 positions (lane = keys lane and 32 + lane) to find where the list ends; each looks up
    // the page table for its own keys only.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegsProducer));
    MLA_PHASE_CLOCK(MLA_PHASE_SMEM, 2, warp == 8 && lane == 0);
    const int pw = warp - 8;
    const int seq = a.b.seq_of_token[t];
    const int pt_lo = a.b.pt_off[seq], pt_n = a.b.pt_off[seq + 1] - pt_lo, ps = a.b.page_size;
    const int32_t* idx = a.index + size_t(t) * a.K;
    const uint8_t* pool = static_cast<const uint8_t*>(a.pool);
    auto pos_at = [&](int s, int h) {
      const int j = j_begin + s * KS + h * 32 + lane;
      return j < j_end ? __ldg(idx + j) : -1;
    };
    const int hm = pw >> 1;  // my keys are in half hm, lanes 16 (pw & 1) ..
    const bool mine = (lane >> 4) == (pw & 1);
    int pn0 = -1, pn1 = -1;  // positions of the next step (loaded one step ahead)
    if (nsteps > 0) pn0 = pos_at(0, 0), pn1 = pos_at(0, 1);
    bool ended = false;
    clk.mark(mla_phases::kOutside);
    for (int s = 0; s < nsteps; ++s) {
      const int b = s & 1;
      const int p0 = pn0, p1 = pn1;
      if (s + 1 < nsteps) pn0 = pos_at(s + 1, 0), pn1 = pos_at(s + 1, 1);
      int row[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int p = h ? p1 : p0;
        const unsigned neg = __ballot_sync(0xffffffffu, p < 0);
        row[h] = -2;
        if (!ended && (neg & ((2u << lane) - 1u)) == 0) {  // no negative entry up to this key
          row[h] = 0;
          if (h == hm && mine) {
            const int pg = p / ps;
            row[h] = pg < pt_n ? __ldg(a.b.pt + pt_lo + pg) * ps + (p - pg * ps) : -1;
          }
        }
        ended |= neg != 0;
      }
      const int myrow = hm ? row[1] : row[0];
      clk.mark(0);  // positions -> pool rows
      if (s >= 2) mbar_wait(bar_empty + 8 * b, ((s >> 1) - 1) & 1);  // step s - 2 left buffer b
      clk.mark(1);  // waiting for a free buffer
      if (mine) ring[b * KS + 32 * hm + lane] = myrow;
      mbar_arrive(bar_full + 8 * b);  // publishes the ring entries
      clk.mark(2);
      const bool last = __shfl_sync(0xffffffffu, row[0], 0) == -2;  // this step starts past the end (all warps)
      if (!last) {
        const uint32_t kb = base + P::k + b * NT * kTile;
        // Row r: lane copies 16-byte chunks lane, lane + 32, ... (a warp moves 512 contiguous bytes per
        // instruction) into tile c / 8, row r, swizzled chunk (c % 8) ^ (r % 8). Masked rows: zeros.
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          const int r = 16 * pw + i;
          const int pr = __shfl_sync(0xffffffffu, myrow, 16 * (pw & 1) + i);
          const bool ok = pr >= 0;
          const uint8_t* src = pool + (ok ? size_t(pr) * rowb : 0) + lane * 16;
          const uint32_t dst = kb + r * 128 + (((lane & 7) ^ (i & 7)) << 4) + (lane >> 3) * kTile;
#pragma unroll
          for (int c0 = 0; c0 < nch; c0 += 32)
            if (c0 + lane < nch) cp_async16(dst + (c0 / 8) * kTile, src + (ok ? c0 * 16 : 0), ok);
        }
      }
      mbar_arrive_cp_async(bar_full + 8 * b);
      clk.mark(3);  // issuing the gathers
      clk.step();
      if (last) break;
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
  clk.mark(mla_phases::kOutside);
  const int wg = warp >> 2, w4 = warp & 3, g = lane >> 2, tq = lane & 3;
  const int row0 = 16 * w4 + g;  // this thread's rows: row0, row0 + 8
  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; ++i) o[i] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  int s = 0;

  if (wg == 0) {
    // ---------------- warpgroup 0: scores, softmax, O[:, 0:NH]
    const float sl2 = a.scale * kLog2e;  // scores in log2 units: exp2 below
    uint32_t pf[16];                     // P as the A fragments of the 4 k-steps of P V
    for (; s < nsteps; ++s) {
      const int b = s & 1;
      mbar_wait(bar_full + 8 * b, (s >> 1) & 1);
      clk.mark(0);  // waiting for the step's keys
      const int* rs = ring + b * KS;
      if (rs[0] == -2) break;
      fence_proxy_async_smem();  // the cp.async bytes, seen through this thread's acquire, for the tensor cores
      const uint32_t kb = base + P::k + b * NT * kTile;
      float sc[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) sc[i] = 0.f;
      reg_fence(sc);
      wgmma_fence();
      // Shared addresses stay below 2^18, so a descriptor plus (offset >> 4) is the descriptor of the address
      // plus offset: the 36 descriptors are additions of constants.
      const uint64_t dq = wgmma_desc_sw128(base + P::q), dk = wgmma_desc_sw128(kb);
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        const uint32_t off = ((k >> 2) * kTile + (k & 3) * 32) >> 4;
        wgmma_m64n64k16_bf16_ss(sc, dq + off, dk + off, k);
      }
      wgmma_commit();
      reg_fence(sc);
      clk.mark(1);  // issuing S
      if (s > 0) {
        wgmma_wait<1>();  // P V of step s - 1 done: warpgroup 0's part of buffer b ^ 1 is free
        reg_fence(o);
        if (lane == 0) mbar_arrive(bar_empty + 8 * (b ^ 1));
      }
      clk.mark(2);  // waiting for P V of the last step
      wgmma_wait<0>();
      reg_fence(sc);
      reg_fence(o);
      clk.mark(3);  // waiting for S

      // masked scores -> row maxima (a row's 64 keys lie in the 4 lanes of a quad)
      float mx[2], alpha[2];
      mask_scores(sc, rs, sl2, tq, mx);
      clk.mark(4);  // masked scores, row maxima
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float mn = fmaxf(m_run[i], mx[i]);
        alpha[i] = mn == -INFINITY ? 1.f : exp2f(m_run[i] - mn);
        m_run[i] = mn;
        l_run[i] *= alpha[i];
      }
      clk.mark(5);  // rescale factors
      // P = exp2(v - m) (0 for masked keys), bf16 A fragments; row sums from the fp32 values
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const float v0 = sc[4 * j + 2 * rr], v1 = sc[4 * j + 2 * rr + 1];
          const float p0 = v0 == -INFINITY ? 0.f : exp2f(v0 - m_run[rr]);
          const float p1 = v1 == -INFINITY ? 0.f : exp2f(v1 - m_run[rr]);
          l_run[rr] += p0 + p1;
          pf[4 * (j >> 1) + 2 * (j & 1) + rr] = pack_bf16(p0, p1);
        }
      clk.mark(6);  // weights P, bf16 fragments, row sums
      if (s > 0) named_bar_sync<kBarPFree, 256>();  // warpgroup 1 is done with P of step s - 1
      clk.mark(7);  // waiting for warpgroup 1 to free P
      // P row r, keys 8j + 2tq (+1) -> tile [64 x 128 B], chunk j ^ (r % 8) (r % 8 = g): conflict-free
      {
        uint8_t* sp = sm + P::p;
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int rr = 0; rr < 2; ++rr)
            *reinterpret_cast<uint32_t*>(sp + (row0 + 8 * rr) * 128 + ((j ^ g) << 4) + 4 * tq) =
                pf[4 * (j >> 1) + 2 * (j & 1) + rr];
        if (tq == 0) s_alpha[row0] = alpha[0], s_alpha[row0 + 8] = alpha[1];
      }
      fence_proxy_async_smem();
      named_bar_arrive<kBarPReady, 256>();
      clk.mark(8);  // P to shared memory
      // Most steps raise no row maximum: skip the multiplies when the whole warp's factors are 1.
      if (!__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) {
#pragma unroll
        for (int i = 0; i < NO; ++i) o[i] *= alpha[(i >> 1) & 1];
      }
      reg_fence(o);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const uint32_t pa[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
        const uint64_t db = wgmma_desc_sw128_mn(kb + kk * 16 * 128, kTile, 8 * 128);
        if constexpr (NH == 256) wgmma_m64n256k16_bf16_rs_tb(o, pa, db, 1);
        else wgmma_m64n128k16_bf16_rs_tb(o, pa, db, 1);
      }
      wgmma_commit();
      reg_fence(o);
      clk.mark(9);  // rescaling O, issuing P V
      clk.step();
    }
    wgmma_wait<0>();
    reg_fence(o);
    if (s > 0) named_bar_sync<kBarPFree, 256>();  // warpgroup 1's last step
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 1);
      l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 2);
    }
    if (tq == 0) {
      s_l[row0] = l_run[0], s_l[row0 + 8] = l_run[1];
      s_m[row0] = m_run[0], s_m[row0 + 8] = m_run[1];
    }
    named_bar_sync<kBarEnd, 256>();
  } else {
    // ---------------- warpgroup 1: O[:, NH:DL], a step behind warpgroup 0
    for (; s < nsteps; ++s) {
      const int b = s & 1;
      mbar_wait(bar_full + 8 * b, (s >> 1) & 1);
      clk.mark(0);  // waiting for the step's keys
      if (ring[b * KS] == -2) break;
      fence_proxy_async_smem();
      named_bar_sync<kBarPReady, 256>();
      clk.mark(1);  // waiting for warpgroup 0's P
      const float al0 = s_alpha[row0], al1 = s_alpha[row0 + 8];
      if (!__all_sync(0xffffffffu, al0 == 1.f && al1 == 1.f)) {
#pragma unroll
        for (int i = 0; i < NO; ++i) o[i] *= (i & 2) ? al1 : al0;
      }
      const uint32_t kb = base + P::k + b * NT * kTile + (NH / 64) * kTile;
      reg_fence(o);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const uint64_t da = wgmma_desc_sw128(base + P::p + kk * 32);
        const uint64_t db = wgmma_desc_sw128_mn(kb + kk * 16 * 128, kTile, 8 * 128);
        if constexpr (NH == 256) wgmma_m64n256k16_bf16_ss_tb(o, da, db, 1);
        else wgmma_m64n128k16_bf16_ss_tb(o, da, db, 1);
      }
      wgmma_commit();
      clk.mark(2);  // rescaling O, issuing P V
      wgmma_wait<0>();
      reg_fence(o);
      clk.mark(3);  // waiting for P V
      if (lane == 0) mbar_arrive(bar_empty + 8 * b);
      named_bar_arrive<kBarPFree, 256>();
      clk.mark(4);
      clk.step();
    }
    named_bar_sync<kBarEnd, 256>();
  }

  // ---------------- epilogue: rows row0, row0 + 8; columns wg * NH + 8j + 2tq (+1)
  const float L[2] = {s_l[row0], s_l[row0 + 8]};
  const float m[2] = {s_m[row0] * kLn2, s_m[row0 + 8] * kLn2};  // natural-log maxima
  store_output_rows<DL, NH>(a, o, split, t, h0, row0, wg * NH, tq, L, m, wg == 0 && tq == 0);
  MLA_PHASE_FLUSH(MLA_PHASE_TOTAL, wg);
}
}  // namespace

MLA_PHASE_TOTALS_FN(mla_wgmma_phase_totals)

bool mla_wgmma_supported(int D, int Dl) { return (D == 576 && Dl == 512) || (D == 320 && Dl == 256); }
int mla_wgmma_heads_per_block() { return HB; }
int mla_wgmma_keys_per_step() { return KS; }

void launch_mla_wgmma(const MlaArgs& a, cudaStream_t st) {
  if (a.T == 0 || a.H == 0) return;
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [&] {
    cudaFuncSetAttribute(mla_wgmma_kernel<576, 512>, cudaFuncAttributeMaxDynamicSharedMemorySize, Plan<576>::alloc);
    cudaFuncSetAttribute(mla_wgmma_kernel<320, 256>, cudaFuncAttributeMaxDynamicSharedMemorySize, Plan<320>::alloc);
  });
  const dim3 grid(unsigned(a.nsplit), unsigned((a.H + HB - 1) / HB), unsigned(a.T));
  if (a.D == 576) launch_k(mla_wgmma_kernel<576, 512>, grid, NTH, Plan<576>::alloc, st, a);
  else launch_k(mla_wgmma_kernel<320, 256>, grid, NTH, Plan<320>::alloc, st, a);
}

}  // namespace ds::backend::cuda
