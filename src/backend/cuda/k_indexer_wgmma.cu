// The lightning indexer's scores on Hopper FP8 warpgroup MMAs (wgmma e4m3 x e4m3 -> fp32, sm_90a), for
// IndexerMode::Fp8's values only:
//   s(t, j) = sum_h w[t,h] * relu(q[t,h,:] . k_j)   for every j <= p(t), keys through the page table.
// Same inputs, outputs and skipped rows as score_tc_kernel (k_indexer_tc.cu) and score_kernel (k_indexer.cu).
//
// Values: in the Fp8 mode q rows and keys are Hadamard-rotated and rounded to e4m3 with a power-of-two row
// scale (hadamard_fp8_round; a packed FP8 key row holds exactly those codes and scale). So each row is
// exactly codes x 2^e: recomputing the row's ue8m0 scale from its amax gives a power of two at or below the
// original, and value / scale is then an e4m3 value again (the codes times 2^k, k >= 0, within +-448): the
// conversion back to bytes is exact. Then q_h . k_j = sq_h sk_j (codes_h . codes_j), and since the scales
// are positive, w_h relu(q_h . k_j) = (w_h sq_h) relu(codes_h . codes_j) sk_j: the weight takes the query's
// scale (exact: times a power of two), the key's scale multiplies the head sum at the end.
//
// Pre-passes (one warp per row, 4 values per lane): the chunk's queries -> q8 [token][64 heads x 128] e4m3
// in the 128-byte swizzle (rows past `heads` zero) and wq = w x scale (0 past `heads`); the keys each
// sequence of the chunk needs (positions 0 .. its largest scored position, gathered through the page
// table) -> k8 rows, in tiles of 128 rows already in the swizzle, and ksc. A score block then moves its
// operands with the bulk copy engine (one 16 KB copy per key tile), with no address work and no conversion.
//
// Score block: QT = 4 or 8 consecutive tokens (a template parameter; IndexerWgmmaBufs::qt) x a range of
// a.tiles tiles of 128 keys. 384 threads:
//   warpgroup 2, the producer (one lane of warp 8 works; 40 registers by setmaxnreg, the consumers get 232):
//     Q (QT x 8 KB) and the weights once, then each key tile + its scales into one of 4 stages (full / empty
//     mbarriers, bulk copies);
//   warpgroups 0, 1: keys 64 wg .. 64 wg + 63 of each tile as the wgmma A operand (M = 64 keys, K-major),
//     the queries as B: N = 128 rows = 2 tokens x 64 heads, so QT / 2 m64n128k32 chains (4 k-steps) per
//     tile cover the tokens. Keys as M (rather than the heads) puts the heads of a key along the
//     accumulator's columns: a thread holds 16 heads of each of its 2 keys per token, so the head sum is 16
//     FMNMX + 16 FFMA per key in registers plus 2 shuffles, instead of a sum across 8 lanes and 4 warps.
//   The chains alternate between two accumulator sets (64 registers each): the epilogue of one runs while the
//   tensor cores do the next (wgmma_wait<1>), and the other warpgroup's chains fill the gaps. Nothing stays
//   in flight across tiles (ptxas serialises the chains otherwise).
// Epilogue per (token, key): relu, times the folded weight, summed over the thread's 16 heads; the 4 lanes
// of a quad (the other 48 heads) add theirs by a transposing exchange (3 shuffles for 4 values) that
// leaves each lane one (token, key) to write, times the key scale.
// Causal: blocks whose keys start past every token's position exit; each score is written only where
// j <= p(t) (keys past a sequence's need are zero rows in k8, never written). Mixed blocks (tokens of
// several sequences: decode batches, chunk + decodes) make one pass over the key range per distinct
// sequence, as k_indexer_tc.cu does; the chains compute all QT tokens and only that sequence's are written.
//
// Numerics: exact e4m3 products; the tensor cores' FP8 accumulation keeps ~14 bits of each k32 step's sum
// before adding to the fp32 accumulator (DeepSeek-V3 tech report, section 3.3.2), so a dot product is good
// to ~2^-13 of sum_i |q_i k_i| at worst rather than fp32's 2^-24 (any FP8 wgmma kernel has this). Measured
// on the H200: scores within 2.5e-5 of sum_h |w_h| ||q_h|| ||k_j|| of the exact ones (the tc kernel: 1e-8;
// tests/gpu/gpu_ops_check_indexer_wgmma.cpp), so top-k picks among near-ties may differ from the tc
// kernel's. The head sum and the weights are fp32.
#include <cuda_fp8.h>

#include <atomic>
#include <cstdint>

#include "backend/cuda/fp8_act.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/per_device.h"
#include "backend/cuda/sync_sm90.cuh"
#include "backend/cuda/wgmma_fp8.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int D = 128;          // head_dim: one 128-byte e4m3 row, one scale
constexpr int HB = 64;          // heads per token (rows past `heads` are zeros)
constexpr int KS = 128;         // keys per tile (2 warpgroups x wgmma M 64)
// Tokens per block, QT = 4 or 8: QT / 2 wgmma chains of N = 128 per tile (template parameter).
constexpr int NSTAGE = 4;       // key tiles in flight
constexpr int NTH = 3 * 128;    // two consumer warpgroups + the producer warpgroup (one warp of it works)
// A wgmma kernel is given registers per warpgroup (168 each for 3); the producer gives most of its share to
// the consumers (2 accumulator sets of 64): 2 x 232 + 40 = 504 <= 512.
constexpr int kRegsConsumer = 232, kRegsProducer = 40;
constexpr int kTokBytes = HB * D;       // 8 KB: one token's q8 tile
constexpr int kTileBytes = KS * D;      // 16 KB: one key tile
constexpr int kRowBytes = D + 4;        // packed key row: 128 codes + a scale

// Byte offsets in the (1024-aligned) shared memory.
template <int QT>
struct Plan {
  static constexpr int q = 0;                                // [QT][64 x 128] e4m3
  static constexpr int k = q + QT * kTokBytes;               // [NSTAGE][128 x 128] e4m3
  static constexpr int ksc = k + NSTAGE * kTileBytes;        // float [NSTAGE][KS]
  static constexpr int w = ksc + NSTAGE * KS * 4;            // float [QT][64]
  static constexpr int bars = w + QT * HB * 4;               // uint64 full[NSTAGE], empty[NSTAGE], q
  static constexpr int bytes = bars + 8 * (2 * NSTAGE + 1);
  static constexpr int alloc = bytes + 1024;                 // + alignment of the dynamic base
};

// Row r of a swizzled tile of 128-byte rows: the byte of 16-byte chunk c, offset o.
__device__ __forceinline__ uint32_t swz_byte(int r, int c, int o) { return r * 128 + (((c ^ (r & 7)) << 4) | o); }

// 4 values -> 4 e4m3 codes (byte i = value i), by the scale sc.
__device__ __forceinline__ uint32_t codes4(float4 v, float sc) {
  return uint32_t(to_e4m3(v.x / sc)) | uint32_t(to_e4m3(v.y / sc)) << 8 | uint32_t(to_e4m3(v.z / sc)) << 16 |
         uint32_t(to_e4m3(v.w / sc)) << 24;
}

__device__ __forceinline__ float warp_amax(float4 v) {
  float m = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  return m;
}

// ---- pre-pass: queries. One warp per (token, head) row of the padded chunk; lane: columns 4 lane .. + 3.
__global__ void prep_q_kernel(IndexerArgs a, IndexerWgmmaBufs b, int rows) {
  pdl_prologue();
  const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int t = row / HB, h = row % HB;
  const bool ok = t < a.Tc && h < a.heads;
  const size_t src = (size_t(a.t0) + t) * a.heads + h;
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (ok) v = __ldg(reinterpret_cast<const float4*>(a.q + src * D) + lane);
  const float sc = ue8m0_scale(warp_amax(v));
  *reinterpret_cast<uint32_t*>(b.q8 + size_t(t) * kTokBytes + swz_byte(h, lane >> 2, 4 * (lane & 3))) = codes4(v, sc);
  if (lane == 0) b.wq[size_t(t) * HB + h] = ok ? __ldg(a.w + src) * sc : 0.f;
}

// ---- pre-pass: keys. One warp per k8 row: row r of sequence s's rows is its position r - first.
__global__ void prep_k_kernel(IndexerArgs a, IndexerWgmmaBufs b) {
  pdl_prologue();
  const int r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= b.rows) return;
  const int s = __ldg(b.tile_seq + r / KS);
  int slot = -1;
  if (s >= 0) {
    const int j = r - __ldg(b.seq_keys + 2 * s);
    if (j < __ldg(b.seq_keys + 2 * s + 1)) {
      const int pt_lo = __ldg(a.b.pt_off + s), pt_n = __ldg(a.b.pt_off + s + 1) - pt_lo, pg = j / a.b.page_size;
      if (pg < pt_n) slot = __ldg(a.b.pt + pt_lo + pg) * a.b.page_size + (j - pg * a.b.page_size);
    }
  }
  uint32_t codes = 0;
  float sc = 0.f;  // rows outside the table: zero codes and scale
  if (slot >= 0 && a.k_fp8) {  // packed: the codes and the power-of-two scale as stored (4-byte aligned rows)
    const uint8_t* row = a.k_fp8 + size_t(slot) * kRowBytes;
    codes = __ldg(reinterpret_cast<const uint32_t*>(row) + lane);
    sc = __ldg(reinterpret_cast<const float*>(row + D));
  } else if (slot >= 0) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(a.k_pool + size_t(slot) * D) + lane);
    sc = ue8m0_scale(warp_amax(v));
    codes = codes4(v, sc);
  }
  *reinterpret_cast<uint32_t*>(b.k8 + size_t(r / KS) * kTileBytes + swz_byte(r % KS, lane >> 2, 4 * (lane & 3))) =
      codes;
  if (lane == 0) b.ksc[r] = sc;
}

// The block's tokens: position, sequence, scored here (inside the chunk, context over top-k, reaching jb).
template <int QT>
struct Tokens {
  int pos[QT], seq[QT];
  bool act[QT];
};

template <int QT>
__device__ __forceinline__ Tokens<QT> block_tokens(const IndexerArgs& a, int tc0, int jb) {
  Tokens<QT> k;
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    const int tc = tc0 + i;
    k.pos[i] = -1, k.seq[i] = -1;
    if (tc < a.Tc) k.pos[i] = __ldg(a.b.pos_of_token + a.t0 + tc), k.seq[i] = __ldg(a.b.seq_of_token + a.t0 + tc);
    k.act[i] = tc < a.Tc && k.pos[i] + 1 > a.topk && k.pos[i] >= jb;
  }
  return k;
}

// Pass `lead` (one per distinct sequence among the active tokens): whether it runs, its sequence and the
// largest scored position. Uniform: every thread computes it from the same loads.
template <int QT>
__device__ __forceinline__ bool pass_of(const Tokens<QT>& k, int lead, int& seq, int& pmax) {
  bool first = false;
  pmax = -1, seq = -1;
#pragma unroll
  for (int i = 0; i < QT; ++i)
    if (i == lead) first = k.act[i], seq = k.seq[i];
#pragma unroll
  for (int i = 0; i < QT; ++i) {
    if (i < lead && k.act[i] && k.seq[i] == seq) first = false;
    if (k.act[i] && k.seq[i] == seq) pmax = max(pmax, k.pos[i]);
  }
  return first;
}

// The block's tiles, pass after pass (pass l: ntl[l] tiles of sequence sq[l] from jb; 0 when it does not
// run). Registers only: every index is a constant after unrolling.
template <int QT>
struct Steps {
  int ntl[QT], sq[QT], total;
  __device__ __forceinline__ void at(int g, int& seq, int& it) const {
    seq = -1, it = 0;
    bool found = false;
#pragma unroll
    for (int l = 0; l < QT; ++l) {
      const bool here = !found && g < ntl[l];
      if (here) seq = sq[l], it = g;
      if (!found && !here) g -= ntl[l];
      found |= here;
    }
  }
};

template <int QT>
__device__ __forceinline__ Steps<QT> block_steps(const Tokens<QT>& tk, int jb, int span) {
  Steps<QT> sp;
  sp.total = 0;
#pragma unroll
  for (int l = 0; l < QT; ++l) {
    int seq, pmax;
    const bool run = pass_of(tk, l, seq, pmax);
    sp.ntl[l] = run ? (min(jb + span, pmax + 1) - jb + KS - 1) / KS : 0;
    sp.sq[l] = seq;
    sp.total += sp.ntl[l];
  }
  return sp;
}

// One chain's epilogue: accumulators of keys (rows) 16 w4 + g (+8) x columns = 2 tokens x 64 heads (token
// 2P + u at columns 64 u ..). Writes this lane's (token 2P + tq / 2, key) after the exchange, where ok (the
// token is scored in this pass) and key <= pos.
template <int P>
__device__ __forceinline__ void epilogue(const float (&acc)[64], const float* s_w, int tq, bool ok, int pos,
                                         int key, float ks, float* out) {
  float v[4];  // [2 u + rr]: token 2P + u, key row rr
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const float* wr = s_w + (2 * P + u) * HB + 2 * tq;
    float v0 = 0.f, v1 = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 ww = *reinterpret_cast<const float2*>(wr + 8 * j);
      const int c = 4 * (8 * u + j);
      v0 = fmaf(ww.x, fmaxf(acc[c], 0.f), v0);
      v0 = fmaf(ww.y, fmaxf(acc[c + 1], 0.f), v0);
      v1 = fmaf(ww.x, fmaxf(acc[c + 2], 0.f), v1);
      v1 = fmaf(ww.y, fmaxf(acc[c + 3], 0.f), v1);
    }
    v[2 * u] = v0, v[2 * u + 1] = v1;
  }
  // Transposing sum over the quad: lane tq ends with value tq (token 2P + tq / 2, key row tq % 2).
  const bool hi = tq & 2, odd = tq & 1;
  float k0 = hi ? v[2] : v[0], k1 = hi ? v[3] : v[1];
  k0 += __shfl_xor_sync(0xffffffffu, hi ? v[0] : v[2], 2);
  k1 += __shfl_xor_sync(0xffffffffu, hi ? v[1] : v[3], 2);
  float r = odd ? k1 : k0;
  r += __shfl_xor_sync(0xffffffffu, odd ? k0 : k1, 1);
  if (ok && key <= pos) out[key] = r * ks;
}

// acc = A (64 keys x 128, descriptor da) . B^T (2 tokens x 64 heads x 128, db): 4 k-steps of 32 bytes.
__device__ __forceinline__ void chain(float (&acc)[64], uint64_t da, uint64_t db) {
#pragma unroll
  for (int k = 0; k < D / 32; ++k) wgmma_m64n128k32_e4m3(acc, da + 2 * k, db + 2 * k, k);  // + 32 bytes per k-step
}

template <int QT>
__global__ void __launch_bounds__(NTH, 1) score_wgmma_kernel(IndexerArgs a, IndexerWgmmaBufs bf) {
  using Plan = Plan<QT>;
  constexpr int NCH = QT / 2;  // chains per tile
  static_assert(QT == 4 || QT == 8, "tokens per block");
  pdl_prologue();
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023u) & ~1023u;
  uint8_t* const sm = smem_raw + (base - raw);
  const uint32_t bar_full = base + Plan::bars, bar_empty = bar_full + 8 * NSTAGE, bar_q = bar_empty + 8 * NSTAGE;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int span = KS * a.tiles, jb = blockIdx.x * span, tc0 = blockIdx.y * QT;
  const Tokens<QT> tk = block_tokens<QT>(a, tc0, jb);
  bool any = false;
#pragma unroll
  for (int i = 0; i < QT; ++i) any |= tk.act[i];
  if (!any) return;  // uniform
  if (tid == 0) {
    for (int s = 0; s < NSTAGE; ++s) mbar_init(bar_full + 8 * s, 1), mbar_init(bar_empty + 8 * s, 8);
    mbar_init(bar_q, 1);
  }
  __syncthreads();

  if (warp >= 8) {
    // ---------------- producer: one lane issues every copy
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegsProducer));
    if (warp != 8 || lane != 0) return;
    mbar_arrive_expect_tx(bar_q, QT * kTokBytes + QT * HB * 4);
    bulk_copy_g2s(base + Plan::q, bf.q8 + size_t(tc0) * kTokBytes, QT * kTokBytes, bar_q);
    bulk_copy_g2s(base + Plan::w, bf.wq + size_t(tc0) * HB, QT * HB * 4, bar_q);
    const Steps<QT> sp = block_steps(tk, jb, span);
    for (int g = 0; g < sp.total; ++g) {
      int seq, it;
      sp.at(g, seq, it);
      const int b = g % NSTAGE;
      if (g >= NSTAGE) mbar_wait(bar_empty + 8 * b, ((g / NSTAGE) - 1) & 1);  // tile g - NSTAGE left stage b
      const int r = __ldg(bf.seq_keys + 2 * seq) + jb + it * KS;
      mbar_arrive_expect_tx(bar_full + 8 * b, kTileBytes + KS * 4);
      bulk_copy_g2s(base + Plan::k + b * kTileBytes, bf.k8 + size_t(r) * D, kTileBytes, bar_full + 8 * b);
      bulk_copy_g2s(base + Plan::ksc + b * KS * 4, bf.ksc + r, KS * 4, bar_full + 8 * b);
    }
    return;  // the consumers wait for every copy issued here
  }

  // ---------------- consumers: warpgroup wg takes keys 64 wg .. of each tile
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegsConsumer));
  const int wg = warp >> 2, w4 = warp & 3, g8 = lane >> 2, tq = lane & 3;
  const int krow = 64 * wg + 16 * w4 + g8 + 8 * (tq & 1);  // the key row this lane writes (within a tile)
  // The tokens this lane writes: 2 P + tq / 2 for chains P (selected by constants: no local memory).
  int tpos[NCH], tseq[NCH];
  bool tact[NCH];
#pragma unroll
  for (int i = 0; i < QT; ++i)
    if ((i & 1) == (tq >> 1)) tpos[i >> 1] = tk.pos[i], tseq[i >> 1] = tk.seq[i], tact[i >> 1] = tk.act[i];
  const float* s_w = reinterpret_cast<const float*>(sm + Plan::w);
  const float* s_ksc = reinterpret_cast<const float*>(sm + Plan::ksc);
  const uint64_t dq = wgmma_desc_sw128(base + Plan::q);  // chain P: + P x 16 KB (>> 4 in the descriptor)
  mbar_wait(bar_q, 0);

  float acc0[64], acc1[64];
  // The passes flattened into one loop over the block's tiles, the chains in its straight-line body, nothing
  // in flight across iterations (ptxas serialises the chains otherwise: warning C7514). Chains alternate
  // between the two accumulator sets; each epilogue runs while the next chain is on the tensor cores.
  const Steps<QT> sp = block_steps(tk, jb, span);
  for (int g = 0; g < sp.total; ++g) {
    int seq, it;
    sp.at(g, seq, it);
    const int b = g % NSTAGE;
    mbar_wait(bar_full + 8 * b, (g / NSTAGE) & 1);
    const float ks = s_ksc[b * KS + krow];
    const int key = jb + it * KS + krow;
    const uint64_t dk = wgmma_desc_sw128(base + Plan::k + b * kTileBytes + wg * (kTileBytes / 2));
    auto out = [&](int P) { return a.scores + size_t(tc0 + 2 * P + (tq >> 1)) * a.L; };  // valid when active
    auto on = [&](int P) { return tact[P] && tseq[P] == seq; };
    reg_fence(acc0);
    reg_fence(acc1);
    wgmma_fence();
    chain(acc0, dk, dq);  // tokens 0, 1
    wgmma_commit();
    chain(acc1, dk, dq + (2 * kTokBytes >> 4));  // tokens 2, 3
    wgmma_commit();
    reg_fence(acc0);
    reg_fence(acc1);
    if constexpr (NCH == 4) {
      wgmma_wait<1>();  // chain 0 done
      reg_fence(acc0);
      epilogue<0>(acc0, s_w, tq, on(0), tpos[0], key, ks, out(0));
      reg_fence(acc0);
      wgmma_fence();
      chain(acc0, dk, dq + (4 * kTokBytes >> 4));  // tokens 4, 5
      wgmma_commit();
      reg_fence(acc0);
      wgmma_wait<1>();  // chain 1 done
      reg_fence(acc1);
      epilogue<1>(acc1, s_w, tq, on(1), tpos[1], key, ks, out(1));
      reg_fence(acc1);
      wgmma_fence();
      chain(acc1, dk, dq + (6 * kTokBytes >> 4));  // tokens 6, 7
      wgmma_commit();
      reg_fence(acc1);
    }
    wgmma_wait<1>();  // chain NCH - 2 done: its epilogue runs beside chain NCH - 1
    reg_fence(acc0);
    epilogue<NCH - 2>(acc0, s_w, tq, on(NCH - 2), tpos[NCH - 2], key, ks, out(NCH - 2));
    wgmma_wait<0>();
    reg_fence(acc1);
    if (lane == 0) mbar_arrive(bar_empty + 8 * b);  // this warp is done with stage b
    epilogue<NCH - 1>(acc1, s_w, tq, on(NCH - 1), tpos[NCH - 1], key, ks, out(NCH - 1));
  }
}
}  // namespace

bool indexer_wgmma_supported(int heads, int head_dim) { return head_dim == D && heads > 0 && heads <= HB; }
int indexer_wgmma_keys_per_tile() { return KS; }

void launch_indexer_scores_wgmma(const IndexerArgs& a, const IndexerWgmmaBufs& w, cudaStream_t st) {
  if (a.Tc == 0) return;
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [&] {
    cudaFuncSetAttribute(score_wgmma_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, Plan<4>::alloc);
    cudaFuncSetAttribute(score_wgmma_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, Plan<8>::alloc);
  });
  launch_k(prep_q_kernel, dim3(unsigned((w.tq * HB + 7) / 8)), dim3(256), 0, st, a, w, w.tq * HB);
  launch_k(prep_k_kernel, dim3(unsigned((w.rows + 7) / 8)), dim3(256), 0, st, a, w);
  const dim3 grid(unsigned((a.L + KS * a.tiles - 1) / (KS * a.tiles)), unsigned((a.Tc + w.qt - 1) / w.qt));
  if (w.qt == 8) launch_k(score_wgmma_kernel<8>, grid, dim3(NTH), size_t(Plan<8>::alloc), st, a, w);
  else launch_k(score_wgmma_kernel<4>, grid, dim3(NTH), size_t(Plan<4>::alloc), st, a, w);
}

}  // namespace ds::backend::cuda
