// Absorbed sparse MLA attention on tensor cores (Hopper, mma.sync), for BF16 latent pools and packed FP8
// ones (dequantised to bf16 in shared memory, see FP8 below).
//
// The op: per query token t and head h, softmax over the selected keys of (q[t,h] . k_j) * scale, then
// sum p_j * k_j[0:Dl]. Every head reads the same key rows (MQA in latent space), so a block takes one
// token, 64 heads and a slice of the key list: each gathered 576-wide row is read from memory once per
// 64 heads (the SIMT kernel: once per 16). Split-K over blocks + mla_combine (launched by the caller)
// for small T, as the SIMT kernel; the host (cuda_attention.cpp) picks nsplit from T, H, K only.
//
// Precision: mma.sync m16n8k16 BF16 -> fp32. The keys of a BF16 pool are exact in bf16; the fp32 query
// and the fp32 softmax weights P are split into two bf16 parts (x = hi + lo, |x - hi - lo| <= 2^-17 |x|),
// so every product is fp32-accurate (two MMAs per product, fp32 accumulation), ~1e-6 relative like the
// SIMT kernel. Why not TF32 m16n8k8: a single TF32 query part rounds to 2^-11 (1e-3-level errors on
// peaked softmaxes), two TF32 parts cost the same MMA count as bf16 hi+lo at half the k per
// instruction, and ldmatrix cannot widen bf16 keys to tf32. FP32 pools stay on the SIMT kernel (their
// keys would need splitting too).
//
// Block: 8 warps, 64 heads (rows of Q), 32 keys per tile, double-buffered key tiles (cp.async).
// Shared memory (D = 576): Q hi+lo 144 KB, 2 key tiles 72 KB, P / score exchange 8 KB: one block per SM.
// Rows are 16-byte-chunk swizzled (chunk ^ row % 8) so that ldmatrix is free of bank conflicts.
// Per tile:
//   S = Q K^T: warp w takes heads 16 (w % 4) .., all 32 keys, half of the D columns (w / 4: every other
//     16 columns), so Q is read from shared memory once per tile; the two column halves are added through shared memory, each warp
//     of a pair keeping 16 of the 32 keys (then row max via shared memory, online softmax in registers).
//   O += P V: warp w takes heads 32 (w % 2) .. and a quarter of the Dl columns (fp32 accumulators in
//     registers: 128 per thread at Dl = 512); P (hi, lo) comes through shared memory.
// The key list of a row ends at its first -1 (only a tail): a tile whose first entry is -1 ends the loop,
// so a 2048-wide index of a short context costs only its valid tiles; an all -1 split writes m = -inf,
// l = 0, which mla_combine handles.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/per_device.h"

namespace ds::backend::cuda {

namespace {
constexpr int HB = 64;         // heads per block
constexpr int TK = 32;         // keys per tile
constexpr int NW = 8;          // warps
constexpr int NT = NW * 32;
constexpr int kPBytes = 8192;  // P hi+lo [2][HB][TK] bf16 = the score exchange [NW][2][4][32] floats
constexpr int kMaxSmem = 232448;  // Hopper's opt-in limit per block (227 KB)
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

__host__ __device__ constexpr size_t smem_bytes(int D) {
  return size_t(2 * HB + 2 * TK) * D * 2 + kPBytes + (3 * TK + NW * 16 + HB + NW * 16 + HB) * 4;
}

// The P arrays: rows of 32 bf16 (64 bytes, 4 chunks); this swizzle keeps 8 consecutive rows conflict-free.
__device__ __forceinline__ uint32_t pswz(int r, int c) { return r * 64 + ((c ^ ((r >> 1) & 3)) << 4); }

// Compile-time widths (the full model's 576 / 512, the demo's 320 / 256): every shared-memory offset of
// the unrolled MMA loops folds into the instruction. NPAIR: pairs of 8-column MMA tiles per warp in P V.
// FP8: the pool holds packed FP8 rows (backend/kv_fp8.h, 656 bytes): cp.async copies a tile's packed rows
// into its key buffer (each warp's rows into the tail of that warp's own bf16 rows), and each warp
// converts its rows in place to bf16(code x scale) rows (FlashMLA's dequantisation, exact in bf16) at the
// top of the tile's iteration, without a block barrier before it; the copy of the next tile still
// overlaps the MMAs. The conversion is exponent arithmetic on the codes (the scales are powers of two,
// kv_bf16x8): fp32 conversions between three barriers had made the kernel 1.6x slower than on BF16 rows.
template <int D, int DL, bool FP8>
__global__ void __launch_bounds__(NT, 1) mla_tc_kernel(MlaArgs a) {
  pdl_prologue();
  static_assert(smem_bytes(D) <= kMaxSmem && D % 64 == 0 && DL % 64 == 0 && DL <= D, "widths");
  constexpr int NPAIR = DL / 64, nch = D / 8, rowb = D * 2;
  extern __shared__ __align__(128) uint8_t sm[];
  const uint32_t s_q = static_cast<uint32_t>(__cvta_generic_to_shared(sm));  // [2 * HB] rows: hi, then lo
  const uint32_t s_k = s_q + 2 * HB * rowb;                                     // [2][TK] rows
  const uint32_t s_p = s_k + 2 * TK * rowb;                                     // P hi [HB][TK], P lo
  uint8_t* p_ptr = sm + 2 * (HB + TK) * rowb;
  float* sx = reinterpret_cast<float*>(p_ptr);  // score exchange, aliases P (never live at the same time)
  int* ring = reinterpret_cast<int*>(p_ptr + kPBytes);  // [3][TK] pool rows of tiles i, i+1, i+2
  float* rm = reinterpret_cast<float*>(ring + 3 * TK);  // [NW][16] tile row maxima
  float* alpha_s = rm + NW * 16;                        // [HB] this tile's rescale factor
  float* lx = alpha_s + HB;                             // [NW][16] row sums at the end
  float* m_s = lx + NW * 16;                            // [HB] row maxima at the end

  const int split = blockIdx.x, h0 = blockIdx.y * HB, t = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int lr = lane & 7, lm = lane >> 3;  // ldmatrix: row within an 8x8 matrix, which matrix
  const int chunk = ((a.K + a.nsplit - 1) / a.nsplit + TK - 1) / TK * TK;
  const int j_begin = split * chunk, j_end = min(a.K, j_begin + chunk);
  const int ntiles = j_end > j_begin ? (j_end - j_begin + TK - 1) / TK : 0;
  const int32_t* idx = a.index + size_t(t) * a.K;

  // ---- pool rows of the key tiles, computed by warp 0 two tiles ahead (lane = key of the tile), with
  // the position load one more tile ahead: the dependent loads (index, then page table) never stall.
  // ring value: pool row, -1 = position outside the page table (masked), -2 = end of the list (-1 in the
  // index or past this split's slice).
  int pt_lo = 0, pt_n = 0;
  if (w == 0) {
    const int seq = a.b.seq_of_token[t];
    pt_lo = a.b.pt_off[seq];
    pt_n = a.b.pt_off[seq + 1] - pt_lo;
  }
  auto pos_at = [&](int tile) {
    const int j = j_begin + tile * TK + lane;
    return j < j_end ? __ldg(idx + j) : -1;
  };
  struct Pending {
    int code, page, off;  // code 0: row = page * page_size + off
  };
  auto start_slot = [&](int p) {
    Pending s{p < 0 ? -2 : 0, 0, 0};
    if (p >= 0) {
      const int pg = p / a.b.page_size;
      s.off = p - pg * a.b.page_size;
      if (pg < pt_n) s.page = __ldg(a.b.pt + pt_lo + pg);
      else s.code = -1;
    }
    return s;
  };
  auto finish_slot = [&](const Pending& s) { return s.code == 0 ? s.page * a.b.page_size + s.off : s.code; };
  // Key tile `tile` (its ring entry must be visible) -> buffer `buf`, one cp.async group. Warp w copies
  // rows 4w .. 4w + 3, lane l their 16-byte chunks l, l + 32, ...
  // FP8: warp w's packed rows (rows RW w .. RW w + RW - 1 of the tile) lie at the tail of its own bf16
  // rows' bytes, so that a warp converts its rows without waiting for the others (16-byte aligned).
  constexpr int RW = TK / NW;                    // rows per warp
  const int pb = FP8 ? a.kv.bytes : 0;           // packed row bytes
  auto packed_off = [&](int r) { return (r / RW) * RW * rowb + RW * (rowb - pb) + (r % RW) * pb; };
  auto load_tile = [&](int tile, int buf) {
    const int* rs = ring + (tile % 3) * TK;
    const uint32_t dst = s_k + buf * TK * rowb;
    if constexpr (FP8) {
#pragma unroll
      for (int k = 0; k < RW; ++k) {
        const int r = w * RW + k, s = rs[r];
        const uint8_t* src = static_cast<const uint8_t*>(a.pool) + (s >= 0 ? size_t(s) * pb : 0);
        for (int c = lane; c < pb / 16; c += 32)  // masked rows: zeros, which decode to 0
          cp_async16(dst + packed_off(r) + c * 16, src + (s >= 0 ? c * 16 : 0), s >= 0);
      }
    } else {
#pragma unroll
      for (int k = 0; k < TK / NW; ++k) {
        const int r = w * (TK / NW) + k, s = rs[r];
        const uint8_t* src = static_cast<const uint8_t*>(a.pool) + (s >= 0 ? size_t(s) * rowb : 0);
#pragma unroll
        for (int c = lane; c < nch; c += 32)  // masked rows become zeros: 0 * p never makes NaN
          cp_async16(dst + swz(r, c, rowb), src + (s >= 0 ? c * 16 : 0), s >= 0);
      }
    }
    cp_async_commit();
  };
  int pos_ahead = -1;
  if (w == 0) {  // the first two tiles' rows now (their loads issued together), the third's position
    const int p0 = pos_at(0), p1 = pos_at(1);
    pos_ahead = pos_at(2);
    const Pending s0 = start_slot(p0), s1 = start_slot(p1);
    ring[lane] = finish_slot(s0);
    ring[TK + lane] = finish_slot(s1);
  }
  __syncthreads();
  if (ntiles > 0) load_tile(0, 0);  // in flight while Q is converted

  // ---- Q -> hi + lo bf16, swizzled; heads past H are zeros (their outputs are not written).
  // Unrolled: many 16-byte loads in flight (at T = 1 this prologue is a good part of the block's time).
#pragma unroll 6
  for (int i = tid; i < HB * nch; i += NT) {
    const int r = i / nch, c = i - r * nch;
    float4 x0 = make_float4(0.f, 0.f, 0.f, 0.f), x1 = x0;
    if (h0 + r < a.H && a.q_bf16) {  // bf16 queries (the bf16 absorption): lo is zero
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(a.q_bf16 + (size_t(t) * a.H + h0 + r) * D) + c);
      x0 = make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u), __uint_as_float(v.y << 16),
                       __uint_as_float(v.y & 0xffff0000u));
      x1 = make_float4(__uint_as_float(v.z << 16), __uint_as_float(v.z & 0xffff0000u), __uint_as_float(v.w << 16),
                       __uint_as_float(v.w & 0xffff0000u));
    } else if (h0 + r < a.H) {
      const float4* src = reinterpret_cast<const float4*>(a.q + (size_t(t) * a.H + h0 + r) * D) + 2 * c;
      x0 = __ldg(src);
      x1 = __ldg(src + 1);
    }
    uint4 hi, lo;
    split2(x0.x, x0.y, hi.x, lo.x);
    split2(x0.z, x0.w, hi.y, lo.y);
    split2(x1.x, x1.y, hi.z, lo.z);
    split2(x1.z, x1.w, hi.w, lo.w);
    *reinterpret_cast<uint4*>(sm + swz(r, c, rowb)) = hi;
    *reinterpret_cast<uint4*>(sm + swz(HB + r, c, rowb)) = lo;
  }  // visible after the loop's first barrier

  const int mq = w & 3, half = w >> 2;  // S role: heads 16 mq .., columns half
  const int hh = w & 1, cq = w >> 1;    // P V role: heads 32 hh .., latent columns quarter cq
  constexpr int ns = D / 16;  // k-steps of 16 columns (even: D % 64 == 0)
  const float sl2 = a.scale * kLog2e;  // scores in log2 units: exp2 below
  float m_run[2] = {-INFINITY, -INFINITY}, l_part[2] = {0.f, 0.f};  // rows g, g + 8 of heads 16 mq
  float o[2][2 * NPAIR][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int n = 0; n < 2 * NPAIR; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait_all();
    const int* rs = ring + (it % 3) * TK;
    if constexpr (FP8) {
      // Packed rows -> bf16 rows of the same buffer, warp by warp: each warp copied its own RW rows (a
      // thread's finished copies plus __syncwarp make them visible to the warp) into the tail of its own
      // rows' bytes, reads them all to registers, then writes the bf16 rows (__syncwarp between: the bytes
      // overlap). No block barrier until the one below, so a warp converts while others still run the
      // previous tile's P V. Thread: row tid / 8 (8 threads per row), latent chunks of 8 codes sub + 8 k
      // (k = 0..7: tile k / 2 of 128 channels, so 4 scales per thread) and rope chunk sub.
      static_assert(TK * 8 == NT && RW * 8 == 32 && DL == 512 && D == DL + 64, "FP8: 656-byte rows, 8 threads each");
      if (rs[0] == -2) break;  // the list ended (uniform; the ring entry was written two barriers ago)
      uint8_t* base = sm + 2 * HB * rowb + (it & 1) * TK * rowb;
      const int r = tid >> 3, sub = tid & 7;
      const uint8_t* row = base + packed_off(r);
      __syncwarp();
      uint2 codes[8];
      float sc[4];
#pragma unroll
      for (int k = 0; k < 8; ++k) codes[k] = *reinterpret_cast<const uint2*>(row + 8 * (sub + 8 * k));
#pragma unroll
      for (int k = 0; k < 4; ++k) sc[k] = *reinterpret_cast<const float*>(row + DL + 4 * k);  // kv.tile = 128
      const uint4 rope = *reinterpret_cast<const uint4*>(row + DL + 16 + 16 * sub);  // 16-byte aligned
      __syncwarp();
#pragma unroll
      for (int k = 0; k < 8; ++k)
        *reinterpret_cast<uint4*>(base + swz(r, sub + 8 * k, rowb)) = kv_bf16x8(codes[k].x, codes[k].y, sc[k / 2]);
      *reinterpret_cast<uint4*>(base + swz(r, 64 + sub, rowb)) = rope;
      __syncthreads();  // tile it converted for everyone; every warp is done with tile it - 1 and its P
    } else {
      __syncthreads();  // tile it landed for everyone; every warp is done with tile it - 1 and its P
      if (rs[0] == -2) break;  // the list ended (uniform: every thread reads the same word)
    }
    if (it + 1 < ntiles) load_tile(it + 1, (it + 1) & 1);
    Pending ahead{};
    if (w == 0) {  // pool rows of tile it + 2 (stored at the end of this tile), position of tile it + 3
      ahead = start_slot(pos_ahead);
      pos_ahead = pos_at(it + 3);
    }
    const uint32_t kt = s_k + (it & 1) * TK * rowb;

    // ---- partial S over this warp's column half: 16 heads x 32 keys (4 MMA tiles of 8 keys)
    float s[4][4];
#pragma unroll
    for (int n = 0; n < 4; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    {
      // Warp pair (mq, half) splits the k-steps of 16 columns by parity: ks = 2 kk + half. With the
      // swizzle, chunk (2 ks + x) of row r sits at ((4 kk) ^ z) with z = (2 half + x) ^ (r % 8): two
      // per-lane bases (kk even / odd) plus a compile-time offset (kk / 2) * 128.
      const int qr = mq * 16 + lr + 8 * (lm & 1), kr = lr + 8 * (lm >> 1);
      const int zq = (2 * half + (lm >> 1)) ^ lr, zk = (2 * half + (lm & 1)) ^ lr;
      const uint32_t aq[2] = {s_q + qr * rowb + (zq << 4), s_q + qr * rowb + ((zq ^ 4) << 4)};
      const uint32_t ak[2] = {kt + kr * rowb + (zk << 4), kt + kr * rowb + ((zk ^ 4) << 4)};
#pragma unroll
      for (int kk = 0; kk < ns / 2; ++kk) {
        const uint32_t off = (kk >> 1) * 128;
        uint32_t ah[4], al[4], b0[4], b1[4];
        ldsm_x4(ah, aq[kk & 1] + off);
        ldsm_x4(al, aq[kk & 1] + HB * rowb + off);
        ldsm_x4(b0, ak[kk & 1] + off);              // keys 0..15
        ldsm_x4(b1, ak[kk & 1] + 16 * rowb + off);  // keys 16..31
        mma_bf16(s[0], ah, b0[0], b0[1]);
        mma_bf16(s[1], ah, b0[2], b0[3]);
        mma_bf16(s[2], ah, b1[0], b1[1]);
        mma_bf16(s[3], ah, b1[2], b1[3]);
        mma_bf16(s[0], al, b0[0], b0[1]);
        mma_bf16(s[1], al, b0[2], b0[3]);
        mma_bf16(s[2], al, b1[0], b1[1]);
        mma_bf16(s[3], al, b1[2], b1[3]);
      }
    }
    // ---- add the partner warp's half (w ^ 4): each keeps keys 16 half .. 16 half + 15
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
#pragma unroll
      for (int r = 0; r < 4; ++r) sx[w * 256 + (jj * 4 + r) * 32 + lane] = half ? s[jj][r] : s[2 + jj][r];
    __syncthreads();
    float v[2][4];  // v[jj][r]: key 16 half + 8 jj + 2 tq + (r & 1), head row g (r < 2) or g + 8
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float sum = (half ? s[2 + jj][r] : s[jj][r]) + sx[(w ^ 4) * 256 + (jj * 4 + r) * 32 + lane];
        const bool ok = rs[16 * half + 8 * jj + 2 * tq + (r & 1)] >= 0;
        v[jj][r] = ok ? sum * sl2 : -INFINITY;
        if (r < 2) mx0 = fmaxf(mx0, v[jj][r]);
        else mx1 = fmaxf(mx1, v[jj][r]);
      }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
    }
    if (tq == 0) rm[w * 16 + g] = mx0, rm[w * 16 + g + 8] = mx1;
    __syncthreads();  // also: every read of sx is done, P may overwrite it
    mx0 = fmaxf(mx0, rm[(w ^ 4) * 16 + g]);
    mx1 = fmaxf(mx1, rm[(w ^ 4) * 16 + g + 8]);
    // ---- online softmax (both warps of a pair compute the same maxima)
    float alpha[2];
    {
      const float mt[2] = {mx0, mx1};
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float mn = fmaxf(m_run[i], mt[i]);
        alpha[i] = mn == -INFINITY ? 1.f : exp2f(m_run[i] - mn);
        m_run[i] = mn;
        l_part[i] *= alpha[i];
      }
    }
    uint8_t* p_hi = p_ptr;
    uint8_t* p_lo = p_ptr + HB * TK * 2;
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {  // rr: head row g or g + 8
        const float p0 = v[jj][2 * rr] == -INFINITY ? 0.f : exp2f(v[jj][2 * rr] - m_run[rr]);
        const float p1 = v[jj][2 * rr + 1] == -INFINITY ? 0.f : exp2f(v[jj][2 * rr + 1] - m_run[rr]);
        l_part[rr] += p0 + p1;
        uint32_t hi, lo;
        split2(p0, p1, hi, lo);
        const uint32_t off = pswz(mq * 16 + g + 8 * rr, 2 * half + jj) + 4 * tq;
        *reinterpret_cast<uint32_t*>(p_hi + off) = hi;
        *reinterpret_cast<uint32_t*>(p_lo + off) = lo;
      }
    if (half == 0 && tq == 0) alpha_s[mq * 16 + g] = alpha[0], alpha_s[mq * 16 + g + 8] = alpha[1];
    __syncthreads();  // P and alpha visible

    // ---- O = alpha O + P V over this warp's 32 heads x Dl / 4 columns
    {
      float al[2][2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
        al[mt][0] = alpha_s[hh * 32 + mt * 16 + g], al[mt][1] = alpha_s[hh * 32 + mt * 16 + g + 8];
      // Most tiles raise no row maximum: skip the 128 multiplies when the whole warp's factors are 1.
      if (!__all_sync(0xffffffffu, al[0][0] == 1.f && al[0][1] == 1.f && al[1][0] == 1.f && al[1][1] == 1.f)) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
          for (int n = 0; n < 2 * NPAIR; ++n)
            o[mt][n][0] *= al[mt][0], o[mt][n][1] *= al[mt][0], o[mt][n][2] *= al[mt][1], o[mt][n][3] *= al[mt][1];
      }
    }
#pragma unroll
    for (int kb = 0; kb < 2; ++kb) {
      uint32_t ph[2][4], pl[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const uint32_t off = pswz(hh * 32 + mt * 16 + lr + 8 * (lm & 1), 2 * kb + (lm >> 1));
        ldsm_x4(ph[mt], s_p + off);
        ldsm_x4(pl[mt], s_p + HB * TK * 2 + off);
      }
#pragma unroll
      for (int np = 0; np < NPAIR; ++np) {
        uint32_t vb[4];  // keys 16 kb .. +15 x latent columns (cq NPAIR + np) 16 .. +15, transposed
        ldsm_x4_t(vb, kt + swz(16 * kb + lr + 8 * (lm & 1), 2 * (cq * NPAIR + np) + (lm >> 1), rowb));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_bf16(o[mt][2 * np], ph[mt], vb[0], vb[1]);
          mma_bf16(o[mt][2 * np + 1], ph[mt], vb[2], vb[3]);
          mma_bf16(o[mt][2 * np], pl[mt], vb[0], vb[1]);
          mma_bf16(o[mt][2 * np + 1], pl[mt], vb[2], vb[3]);
        }
      }
    }
    if (w == 0) ring[((it + 2) % 3) * TK + lane] = finish_slot(ahead);  // read after the next barrier
  }
  cp_async_wait_all();  // nothing is in flight here; kept so that no copy can outlive the block

  // ---- row sums (quad, then the two warps of a pair) and maxima -> the P V warps' rows
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l_part[i] += __shfl_xor_sync(0xffffffffu, l_part[i], 1);
    l_part[i] += __shfl_xor_sync(0xffffffffu, l_part[i], 2);
  }
  if (tq == 0) {
    lx[w * 16 + g] = l_part[0], lx[w * 16 + g + 8] = l_part[1];
    if (half == 0) m_s[mq * 16 + g] = m_run[0], m_s[mq * 16 + g + 8] = m_run[1];
  }
  __syncthreads();
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int row = hh * 32 + mt * 16 + g + 8 * rr, h = h0 + row;  // row's S warps: row / 16 and row / 16 + 4
      if (h >= a.H) continue;
      const float L = lx[(row >> 4) * 16 + (row & 15)] + lx[((row >> 4) + 4) * 16 + (row & 15)];
      const int c0 = cq * NPAIR * 16 + 2 * tq;
      if (a.nsplit == 1) {
        const float inv = L > 0.f ? 1.0f / L : 0.f;
        float* dst = a.out + (size_t(t) * a.H + h) * a.Dl + c0;
#pragma unroll
        for (int n = 0; n < 2 * NPAIR; ++n)
          *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[mt][n][2 * rr] * inv, o[mt][n][2 * rr + 1] * inv);
      } else {
        const size_t prow = (size_t(split) * a.T + t) * a.H + h;
        float* dst = a.part_o + prow * a.Dl + c0;
#pragma unroll
        for (int n = 0; n < 2 * NPAIR; ++n)
          *reinterpret_cast<float2*>(dst + 8 * n) = make_float2(o[mt][n][2 * rr], o[mt][n][2 * rr + 1]);
        if (cq == 0 && tq == 0) a.part_m[prow] = m_s[row] * kLn2, a.part_l[prow] = L;  // natural-log max
      }
    }
}
}  // namespace

bool mla_tc_supported(int D, int Dl) { return (D == 576 && Dl == 512) || (D == 320 && Dl == 256); }

bool mla_tc_takes_fp8(int D, int Dl, int row_bytes) { return D == 576 && Dl == 512 && row_bytes == 656; }

int mla_tc_heads_per_block() { return HB; }
int mla_tc_keys_per_tile() { return TK; }

void launch_mla_tc(const MlaArgs& a, cudaStream_t st) {
  if (a.T == 0 || a.H == 0) return;
  const size_t smem = smem_bytes(a.D);
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [&] {
    cudaFuncSetAttribute(mla_tc_kernel<576, 512, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(smem_bytes(576)));
    cudaFuncSetAttribute(mla_tc_kernel<320, 256, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(smem_bytes(320)));
    cudaFuncSetAttribute(mla_tc_kernel<576, 512, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(smem_bytes(576)));
  });
  dim3 grid(unsigned(a.nsplit), unsigned((a.H + HB - 1) / HB), unsigned(a.T));
  if (a.pool_fp8) launch_k(mla_tc_kernel<576, 512, true>, grid, NT, smem, st, a);  // mla_tc_takes_fp8: 576 only
  else if (a.D == 576) launch_k(mla_tc_kernel<576, 512, false>, grid, NT, smem, st, a);
  else launch_k(mla_tc_kernel<320, 256, false>, grid, NT, smem, st, a);
}

}  // namespace ds::backend::cuda
