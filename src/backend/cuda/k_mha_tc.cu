// Dense causal MLA prefill in the expanded (MHA) form on tensor cores: FlashAttention-2 style.
//
// The op: per query token t (position p of its sequence) and head h, softmax over the keys 0..p of
// (q[t,h] . [K_nope[h] | k_rope]) * scale, then sum p_j V[h]_j. K_nope and V come from the kv_b product
// of the latents, the rope key is shared by all heads. The activations are fp32, so a pack kernel first
// writes K and V once as bf16, head-major ([H, N, Dn+Dr], [H, N, Dv]): one pass over kvb, and rows that
// cp.async can copy straight into shared memory. (No per-head copies: one launch for all heads.)
//
// Attention kernel: one block per (query tile of 128 tokens of one sequence, head), 8 warps of 16 query
// rows each; Q converted to bf16 once and kept in registers as MMA A fragments; key tiles of 64 rows of K
// and V double-buffered in shared memory (cp.async), rows 16-byte-chunk swizzled so that ldmatrix is
// conflict-free. Per key tile: S = Q K^T (m16n8k16 BF16, fp32 accumulators), the causal mask, online
// softmax in registers (exp2, scale folded into log2 units), P converted in registers into A fragments
// (the S accumulator layout of two 8-key tiles is the A layout of one 16-key step), O += P V with V read
// by ldmatrix.trans. Only key tiles up to the tile's last position are visited (causal skip); the tiles
// come sorted longest first and a head's tiles are adjacent in the grid (its K/V stay in L2).
// Precision: Q, K, V and P rounded to bf16, fp32 accumulation and softmax (FlashAttention's numerics).
#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/per_device.h"

namespace ds::backend::cuda {

namespace {
constexpr int BM = 128;  // queries per block
constexpr int BN = 64;   // keys per tile
constexpr int NW = 8;    // warps (16 query rows each)
constexpr int NT = NW * 32;
constexpr float kLog2e = 1.4426950408889634f;

__host__ __device__ constexpr int pitch_of(int d) { return (d + 63) / 64 * 64; }  // elements; rows of 128k bytes
template <int DQK, int DV>
__host__ __device__ constexpr size_t smem_bytes() {
  return size_t(BM + 2 * BN) * pitch_of(DQK) * 2 + size_t(2 * BN) * pitch_of(DV) * 2;
}

__device__ __forceinline__ uint32_t pack_bf16(float x0, float x1) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One 16-byte chunk (8 elements) of the output per thread: K chunks of every head, then V chunks.
template <bool BF16_OUT, bool HEAD_MAJOR, bool ROPE_BF16>
__global__ void mha_pack_kernel(MhaPackArgs a, void* k_out, void* v_out) {
  pdl_prologue();
  const int Dq = a.Dn + a.Dr, kch = Dq / 8, vch = a.Dv / 8, per_row = a.H * (kch + vch);
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(a.N) * per_row) return;
  const int n = int(i / per_row), r = int(i - int64_t(n) * per_row);
  const float* kv_row = a.kvb + size_t(n) * a.H * (a.Dn + a.Dv);
  float x[8];
  int64_t dst;
  bool is_k;
  if (r < a.H * kch) {
    is_k = true;
    const int h = r / kch, e = (r - h * kch) * 8;
    dst = (HEAD_MAJOR ? (int64_t(h) * a.N + n) : (int64_t(n) * a.H + h)) * Dq + e;
    if (e < a.Dn) {
      const float4* s = reinterpret_cast<const float4*>(kv_row + h * (a.Dn + a.Dv) + e);
      const float4 x0 = __ldg(s), x1 = __ldg(s + 1);
      x[0] = x0.x, x[1] = x0.y, x[2] = x0.z, x[3] = x0.w, x[4] = x1.x, x[5] = x1.y, x[6] = x1.z, x[7] = x1.w;
    } else if constexpr (ROPE_BF16) {
      const uint4 b = __ldg(reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(a.rope) +
                                                           n * a.rope_stride + a.rope_col0 + (e - a.Dn)));
      const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&b);
#pragma unroll
      for (int k = 0; k < 4; ++k) x[2 * k] = __low2float(p[k]), x[2 * k + 1] = __high2float(p[k]);
    } else {
      const float4* s = reinterpret_cast<const float4*>(static_cast<const float*>(a.rope) + n * a.rope_stride +
                                                        a.rope_col0 + (e - a.Dn));
      const float4 x0 = __ldg(s), x1 = __ldg(s + 1);
      x[0] = x0.x, x[1] = x0.y, x[2] = x0.z, x[3] = x0.w, x[4] = x1.x, x[5] = x1.y, x[6] = x1.z, x[7] = x1.w;
    }
  } else {
    is_k = false;
    const int rv = r - a.H * kch, h = rv / vch, e = (rv - h * vch) * 8;
    dst = (HEAD_MAJOR ? (int64_t(h) * a.N + n) : (int64_t(n) * a.H + h)) * a.Dv + e;
    const float4* s = reinterpret_cast<const float4*>(kv_row + h * (a.Dn + a.Dv) + a.Dn + e);
    const float4 x0 = __ldg(s), x1 = __ldg(s + 1);
    x[0] = x0.x, x[1] = x0.y, x[2] = x0.z, x[3] = x0.w, x[4] = x1.x, x[5] = x1.y, x[6] = x1.z, x[7] = x1.w;
  }
  if constexpr (BF16_OUT) {
    const uint4 o = make_uint4(pack_bf16(x[0], x[1]), pack_bf16(x[2], x[3]), pack_bf16(x[4], x[5]),
                               pack_bf16(x[6], x[7]));
    *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(is_k ? k_out : v_out) + dst) = o;
  } else {
    float4* o = reinterpret_cast<float4*>(static_cast<float*>(is_k ? k_out : v_out) + dst);
    o[0] = make_float4(x[0], x[1], x[2], x[3]);
    o[1] = make_float4(x[4], x[5], x[6], x[7]);
  }
}

template <bool BF16_OUT, bool HEAD_MAJOR>
void launch_pack(const MhaPackArgs& a, void* k, void* v, cudaStream_t st) {
  const int64_t chunks = int64_t(a.N) * a.H * ((a.Dn + a.Dr) / 8 + a.Dv / 8);
  if (chunks == 0) return;
  const unsigned blocks = unsigned((chunks + 255) / 256);
  if (a.rope_bf16) launch_k(mha_pack_kernel<BF16_OUT, HEAD_MAJOR, true>, blocks, 256, 0, st, a, k, v);
  else launch_k(mha_pack_kernel<BF16_OUT, HEAD_MAJOR, false>, blocks, 256, 0, st, a, k, v);
}

template <int DQK, int DV>
__global__ void __launch_bounds__(NT, 1) mha_tc_kernel(MhaArgs a) {
  pdl_prologue();
  static_assert(DQK % 16 == 0 && DV % 16 == 0, "widths");
  constexpr int QP = pitch_of(DQK), VP = pitch_of(DV), rq = QP * 2, rv = VP * 2;  // row bytes
  constexpr int KS = DQK / 16, NS = BN / 8, ND = DV / 8;  // k-steps of S, key tiles of 8, value tiles of 8
  extern __shared__ __align__(128) uint8_t sm[];
  const uint32_t s_q = smem_addr(sm);          // [BM] rows of QP
  const uint32_t s_k = s_q + BM * rq;          // [2][BN] rows of QP
  const uint32_t s_v = s_k + 2 * BN * rq;      // [2][BN] rows of VP

  const MhaTile tile = a.tiles[blockIdx.x];
  const int h = blockIdx.y;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int nkeys = tile.pos0 + tile.nq, nkt = (nkeys + BN - 1) / BN;
  const __nv_bfloat16* kh = reinterpret_cast<const __nv_bfloat16*>(a.k) + (size_t(h) * a.N + tile.krow0) * DQK;
  const __nv_bfloat16* vh = reinterpret_cast<const __nv_bfloat16*>(a.v) + (size_t(h) * a.N + tile.krow0) * DV;

  // Key tile kt -> buffer buf (one cp.async group); rows past the sequence's last key are zeros.
  auto load_kv = [&](int kt, int buf) {
    for (int i = tid; i < BN * (DQK / 8); i += NT) {
      const int r = i / (DQK / 8), c = i - r * (DQK / 8), j = kt * BN + r;
      const bool ok = j < nkeys;
      cp_async16(s_k + buf * BN * rq + swz(r, c, rq), kh + size_t(ok ? j : 0) * DQK + c * 8, ok);
    }
    for (int i = tid; i < BN * (DV / 8); i += NT) {
      const int r = i / (DV / 8), c = i - r * (DV / 8), j = kt * BN + r;
      const bool ok = j < nkeys;
      cp_async16(s_v + buf * BN * rv + swz(r, c, rv), vh + size_t(ok ? j : 0) * DV + c * 8, ok);
    }
    cp_async_commit();
  };
  load_kv(0, 0);  // in flight while Q is converted

  // Q -> bf16 rows in shared memory (rows past the tile: zeros, outputs not written), then A fragments.
  for (int i = tid; i < BM * (DQK / 8); i += NT) {
    const int r = i / (DQK / 8), c = i - r * (DQK / 8);
    uint4 x = make_uint4(0, 0, 0, 0);
    if (r < tile.nq) {
      const float4* src = reinterpret_cast<const float4*>(a.q + (size_t(tile.t0 + r) * a.H + h) * DQK + c * 8);
      const float4 x0 = __ldg(src), x1 = __ldg(src + 1);
      x = make_uint4(pack_bf16(x0.x, x0.y), pack_bf16(x0.z, x0.w), pack_bf16(x1.x, x1.y), pack_bf16(x1.z, x1.w));
    }
    *reinterpret_cast<uint4*>(sm + swz(r, c, rq)) = x;
  }
  __syncthreads();
  uint32_t qf[KS][4];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) ldsm_x4(qf[ks], s_q + swz(16 * w + (lane & 15), 2 * ks + (lane >> 4), rq));

  const float sl2 = a.scale * kLog2e;
  // This thread's two query rows: 16 w + g and 16 w + g + 8, at positions pos0 + row.
  const int pos_r0 = tile.pos0 + 16 * w + g, pos_r1 = pos_r0 + 8;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  float o[ND][4];
#pragma unroll
  for (int d = 0; d < ND; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;

  // ldmatrix lane roles: K (non-trans) key row lr + 8 (lane / 16), chunk (lane / 8) % 2;
  // V (trans) key row lr + 8 ((lane / 8) % 2), chunk lane / 16.
  const int lr = lane & 7;
  const int k_row = lr + ((lane >> 4) << 3), k_chunk = (lane >> 3) & 1;
  const int v_row = lr + (((lane >> 3) & 1) << 3), v_chunk = lane >> 4;
  // Warp w's last query position: key tiles past it hold nothing for this warp (skipped); a warp past the
  // tile's queries skips them all.
  const int warp_last = 16 * w < tile.nq ? tile.pos0 + min(16 * w + 15, tile.nq - 1) : -1;

  for (int kt = 0; kt < nkt; ++kt) {
    cp_async_wait_all();
    __syncthreads();  // tile kt landed for everyone; every warp is done with tile kt - 1's buffer
    if (kt + 1 < nkt) load_kv(kt + 1, (kt + 1) & 1);
    if (kt * BN > warp_last) continue;  // causal skip (uniform per warp; barriers stay at the loop top)
    const uint32_t kb = s_k + (kt & 1) * BN * rq, vb = s_v + (kt & 1) * BN * rv;

    // ---- S = Q K^T: 16 rows x 64 keys
    float s[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        uint32_t b[4];
        ldsm_x4(b, kb + swz(16 * np + k_row, 2 * ks + k_chunk, rq));
        mma_bf16(s[2 * np], qf[ks], b[0], b[1]);
        mma_bf16(s[2 * np + 1], qf[ks], b[2], b[3]);
      }

    // ---- causal mask, online softmax (log2 units); entries r < 2: row g, else row g + 8
    const bool diag = kt * BN + BN - 1 > tile.pos0 + 16 * w;  // some key of the tile after some row's position
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int j = kt * BN + 8 * n + 2 * tq + (r & 1);
        float v = s[n][r] * sl2;
        if (diag && j > (r < 2 ? pos_r0 : pos_r1)) v = -INFINITY;
        s[n][r] = v;
        mx[r >> 1] = fmaxf(mx[r >> 1], v);
      }
    float alpha[2], mref[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      const float mn = fmaxf(m_run[i], mx[i]);
      alpha[i] = m_run[i] == -INFINITY ? 0.f : exp2f(m_run[i] - mn);
      mref[i] = mn == -INFINITY ? 0.f : mn;  // a row with no key yet: every p is 0
      m_run[i] = mn;
      l_run[i] *= alpha[i];
    }
#pragma unroll
    for (int d = 0; d < ND; ++d) {
      o[d][0] *= alpha[0], o[d][1] *= alpha[0];
      o[d][2] *= alpha[1], o[d][3] *= alpha[1];
    }
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float p = exp2f(s[n][r] - mref[r >> 1]);
        s[n][r] = p;
        l_run[r >> 1] += p;
      }

    // ---- O += P V: the S accumulators of key tiles 2 kk, 2 kk + 1 are the A fragment of k-step kk
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < ND / 2; ++dp) {
        uint32_t b[4];
        ldsm_x4_t(b, vb + swz(16 * kk + v_row, 2 * dp + v_chunk, rv));
        mma_bf16(o[2 * dp], pa, b[0], b[1]);
        mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
  }

  // ---- row sums over the quad, normalise, store rows g and g + 8 of this warp (those inside the tile)
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 1);
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 2);
    l_run[i] = l_run[i] > 0.f ? 1.f / l_run[i] : 0.f;
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = 16 * w + g + 8 * i;
    if (row >= tile.nq) continue;
    float* dst = a.out + (size_t(tile.t0 + row) * a.H + h) * DV + 2 * tq;
#pragma unroll
    for (int d = 0; d < ND; ++d)
      *reinterpret_cast<float2*>(dst + 8 * d) = make_float2(o[d][2 * i] * l_run[i], o[d][2 * i + 1] * l_run[i]);
  }
}

template <int DQK, int DV>
void launch_tc(const MhaArgs& a, cudaStream_t st) {
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [] {
    cudaFuncSetAttribute(mha_tc_kernel<DQK, DV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(smem_bytes<DQK, DV>()));
  });
  launch_k(mha_tc_kernel<DQK, DV>, dim3(unsigned(a.ntiles), unsigned(a.H)), NT, smem_bytes<DQK, DV>(), st, a);
}
}  // namespace

void launch_mha_pack_bf16(const MhaPackArgs& a, uint16_t* k, uint16_t* v, cudaStream_t st) {
  launch_pack<true, true>(a, k, v, st);
}
void launch_mha_pack_f32(const MhaPackArgs& a, float* k, float* v, cudaStream_t st) {
  launch_pack<false, false>(a, k, v, st);
}

bool mha_tc_supported(int Dn, int Dr, int Dv) {
  return (Dn == 128 && Dr == 64 && Dv == 128) || (Dn == 64 && Dr == 64 && Dv == 64) || (Dn == 32 && Dr == 16 && Dv == 32);
}
int mha_tc_queries_per_tile() { return BM; }

void launch_mha_tc(const MhaArgs& a, int Dn, int Dr, int Dv, cudaStream_t st) {
  if (a.ntiles == 0 || a.H == 0) return;
  if (Dn == 128 && Dr == 64 && Dv == 128) launch_tc<192, 128>(a, st);
  else if (Dn == 64 && Dr == 64 && Dv == 64) launch_tc<128, 64>(a, st);
  else if (Dn == 32 && Dr == 16 && Dv == 32) launch_tc<48, 32>(a, st);
}

}  // namespace ds::backend::cuda
