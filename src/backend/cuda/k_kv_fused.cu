// The attention block's per-token K/V steps fused into one kernel each (Backend::mla_kv_write,
// Backend::indexer_key_write, Backend::mla_absorb_q_rope): in a decode step every one of the kernels they
// replace moves a few KB, so their cost was the launch, ramp and tail of each (docs/ARCHITECTURE.md). One
// block per token. The arithmetic is that of the kernels the composition runs (k_elementwise.cu, k_quant.cu,
// k_kv_fp8.cu: the same block sizes and reduction orders, row_math.cuh's helpers), so a fused kernel's pool
// rows equal the composition's bit for bit.
#include <cuda_bf16.h>

#include "backend/cuda/fp8_act.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/row_math.cuh"

namespace ds::backend::cuda {

namespace {

// Largest |x| over the block (every thread gets it); `red` holds 32 floats of shared memory. fmaxf is exact
// and order-free, so any block size gives the value of k_kv_fp8.cu's 128-thread reduction.
__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float m = 0.f;
  for (int i = 0; i < nw; ++i) m = fmaxf(m, red[i]);
  return m;
}

// The e4m3 part of a packed row from x [L.quant_dim] (shared memory): cache_write_fp8_kernel's steps.
__device__ void pack_fp8_quant(const float* x, uint8_t* row, const KvFp8Dev& L, float* red) {
  for (int c0 = 0; c0 < L.quant_dim; c0 += L.tile) {
    const int n = min(L.tile, L.quant_dim - c0);
    float amax = 0.f;
    for (int c = threadIdx.x; c < n; c += blockDim.x) amax = fmaxf(amax, fabsf(x[c0 + c]));
    amax = block_max(amax, red);
    const float s = kv_scale(amax, L.pow2);
    for (int c = threadIdx.x; c < n; c += blockDim.x) row[c0 + c] = s > 0.f ? kv_to_e4m3(x[c0 + c] / s) : uint8_t(0);
    if (threadIdx.x == 0) *reinterpret_cast<float*>(row + L.quant_dim + 4 * (c0 / L.tile)) = s;
  }
}

// Element j of a token's row into an F32 / BF16 pool row (cache_write_kernel / cache_write_bf16_kernel).
__device__ __forceinline__ void store_elem(const KvDst& d, size_t row, int j, float v) {
  if (d.kind == KvPoolKind::BF16)
    static_cast<__nv_bfloat16*>(d.pool)[row * d.D + j] = __float2bfloat16_rn(v);
  else
    static_cast<float*>(d.pool)[row * d.D + j] = v;
}

// One block of row_threads(Dl) threads per token (rmsnorm_vec_kernel's grouping of the row into float4s).
__global__ void mla_kv_write_kernel(const float* __restrict__ kv, int Dl, int Dr, const float* __restrict__ norm_w,
                                    float eps, const int32_t* __restrict__ pos, RopeFreqs f, float af, KvDst dst) {
  const int t = blockIdx.x, tid = threadIdx.x;
  const int n4 = Dl / 4;
  // The norm's weight before the wait (pdl.cuh's exception), as rmsnorm_vec_kernel.
  const float4* w4 = reinterpret_cast<const float4*>(norm_w);
  float4 g[kNormVec];
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int i = tid + k * blockDim.x;
    if (i < n4) g[k] = w4[i];
  }
  pdl_prologue();
  __shared__ float red[32];
  __shared__ float y[kFusedMaxLatent];  // the normalised latent, for the FP8 quantisation
  const int slot = dst.slots[t];
  if (slot < 0) return;  // a padding row of a captured step: nothing to store (uniform over the block)
  const float* row = kv + size_t(t) * (Dl + Dr);
  // c = rmsnorm(kv[t, :Dl]) exactly as rmsnorm_vec_kernel computes it for the copied row.
  const float4* x4 = reinterpret_cast<const float4*>(row);
  float4 v[kNormVec];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int i = tid + k * blockDim.x;
    if (i >= n4) continue;
    const float4 a = x4[i];
    v[k] = a;
    ss = fmaf(a.x, a.x, ss);
    ss = fmaf(a.y, a.y, ss);
    ss = fmaf(a.z, a.z, ss);
    ss = fmaf(a.w, a.w, ss);
  }
  ss = block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / float(Dl) + eps);
  const bool fp8 = dst.kind == KvPoolKind::FP8;
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int i = tid + k * blockDim.x;
    if (i >= n4) continue;
    const float o[4] = {g[k].x * (v[k].x * r), g[k].y * (v[k].y * r), g[k].z * (v[k].z * r), g[k].w * (v[k].w * r)};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (fp8) y[4 * i + e] = o[e];
      else store_elem(dst, size_t(slot), 4 * i + e, o[e]);
    }
  }
  // k_rope = kv[t, Dl:] rotated (interleaved), as rope_kernel does it.
  uint8_t* prow = fp8 ? static_cast<uint8_t*>(dst.pool) + size_t(slot) * dst.fp8.bytes : nullptr;
  const int p = pos[t];
  for (int i = tid; i < Dr / 2; i += blockDim.x) {
    float c, s, y0, y1;
    rope_cos_sin(f.inv_freq[i], p, af, c, s);
    rope_rotate(row[Dl + 2 * i], row[Dl + 2 * i + 1], c, s, y0, y1);
    if (fp8) {
      __nv_bfloat16* b = reinterpret_cast<__nv_bfloat16*>(prow + kv_bf16_off(dst.fp8)) + 2 * i;
      b[0] = __float2bfloat16_rn(y0);
      b[1] = __float2bfloat16_rn(y1);
    } else {
      store_elem(dst, size_t(slot), Dl + 2 * i, y0);
      store_elem(dst, size_t(slot), Dl + 2 * i + 1, y1);
    }
  }
  if (fp8) {
    __syncthreads();  // y complete
    pack_fp8_quant(y, prow, dst.fp8, red);
  }
}

// One block of row_threads(Di) threads per token (layernorm_kernel's grouping).
__global__ void indexer_key_write_kernel(const float* __restrict__ k, int Di, const float* __restrict__ ln_w,
                                         const float* __restrict__ ln_b, float eps, int rot_dim,
                                         const int32_t* __restrict__ pos, RopeFreqs f, float af, bool hadamard,
                                         KvDst dst) {
  pdl_prologue();
  __shared__ float red[32];
  __shared__ float v[kFusedMaxIndexDim];
  const int t = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
  const int slot = dst.slots[t];
  if (slot < 0) return;  // a padding row of a captured step (uniform over the block)
  // LayerNorm, as layernorm_kernel.
  const float* xr = k + size_t(t) * Di;
  float s = 0.f;
  for (int i = tid; i < Di; i += nt) {
    const float x = xr[i];
    v[i] = x;
    s += x;
  }
  const float mean = block_sum(s, red) / float(Di);
  float q = 0.f;
  for (int i = tid; i < Di; i += nt) q = ln_acc_sq(v[i] - mean, q);
  const float var = block_sum(q, red) / float(Di);
  const float r = 1.0f / sqrtf(var + eps);
  for (int i = tid; i < Di; i += nt) v[i] = ln_out(v[i] - mean, r, ln_w[i], ln_b[i]);
  __syncthreads();
  // The first rot_dim columns rotated in the half-split layout, as rope_kernel.
  const int half = rot_dim / 2, p = pos[t];
  for (int i = tid; i < half; i += nt) {
    float c, sn;
    rope_cos_sin(f.inv_freq[i], p, af, c, sn);
    rope_rotate(v[i], v[i + half], c, sn, v[i], v[i + half]);
  }
  __syncthreads();
  if (hadamard) {  // hadamard_kernel (k_quant.cu): the same butterflies, scale and e4m3 round trip
    for (int len = 1; len < Di; len <<= 1) {
      for (int b = tid; b < Di / 2; b += nt) {
        const int j = (b / len) * 2 * len + (b % len);
        const float a0 = v[j], a1 = v[j + len];
        v[j] = a0 + a1;
        v[j + len] = a0 - a1;
      }
      __syncthreads();
    }
    const float norm = 1.0f / sqrtf(float(Di));
    float amax = 0.f;
    for (int i = tid; i < Di; i += nt) amax = fmaxf(amax, fabsf(v[i] * norm));
    amax = block_max(amax, red);
    const float sc = ue8m0_scale(amax);
    for (int i = tid; i < Di; i += nt) v[i] = from_e4m3(to_e4m3(v[i] * norm / sc)) * sc;
    __syncthreads();
  }
  if (dst.kind == KvPoolKind::FP8) {
    pack_fp8_quant(v, static_cast<uint8_t*>(dst.pool) + size_t(slot) * dst.fp8.bytes, dst.fp8, red);
  } else {
    for (int i = tid; i < Di; i += nt) store_elem(dst, size_t(slot), i, v[i]);
  }
}

// Blocks (token, slice of kRopeCopyPairs pairs): the slice's cosines and sines once per frequency, then a
// pair a thread (one block per token was a 10 us chain of 16 pairs a thread at 128 heads).
constexpr int kRopeCopyPairs = 256;
__global__ void rope_copy_kernel(const float* __restrict__ q, int H, int qd, int Dn, int Dr, float* __restrict__ out,
                                 int out_hd, int out_col0, const int32_t* __restrict__ pos, RopeFreqs f, float af) {
  pdl_prologue();
  __shared__ float cs[2 * kMaxRopeHalf];
  const int t = blockIdx.x, half = Dr / 2, p = pos[t];
  for (int i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin(f.inv_freq[i], p, af, cs[i], cs[kMaxRopeHalf + i]);
  __syncthreads();
  const int e_end = min(H * half, int(blockIdx.y + 1) * kRopeCopyPairs);
  for (int e = blockIdx.y * kRopeCopyPairs + threadIdx.x; e < e_end; e += blockDim.x) {
    const int h = e / half, i = e % half;
    const float* x = q + (size_t(t) * H + h) * qd + Dn + 2 * i;
    float* o = out + (size_t(t) * H + h) * out_hd + out_col0 + 2 * i;
    rope_rotate(x[0], x[1], cs[i], cs[kMaxRopeHalf + i], o[0], o[1]);
  }
}

// One block per token: the nope columns to bf16 in chunks of 8 (two float4 loads, one 16-byte store), then
// the rope pairs rotated and rounded.
__global__ void q_split_bf16_kernel(const float* __restrict__ q, int H, int qd, int Dn, int Dr,
                                    uint16_t* __restrict__ nope, uint16_t* __restrict__ out, int out_hd, int out_col0,
                                    const int32_t* __restrict__ pos, RopeFreqs f, float af) {
  pdl_prologue();
  __shared__ float cs[2 * kMaxRopeHalf];
  const int t = blockIdx.x, half = Dr / 2, p = pos[t], nch = Dn / 8;
  for (int i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin(f.inv_freq[i], p, af, cs[i], cs[kMaxRopeHalf + i]);
  const float* qt = q + size_t(t) * H * qd;
  for (int e = threadIdx.x; e < H * nch; e += blockDim.x) {
    const int h = e / nch, c = e - h * nch;
    const float4* x = reinterpret_cast<const float4*>(qt + size_t(h) * qd + 8 * c);
    const float4 a = x[0], b = x[1];
    const __nv_bfloat162 v[4] = {__floats2bfloat162_rn(a.x, a.y), __floats2bfloat162_rn(a.z, a.w),
                                 __floats2bfloat162_rn(b.x, b.y), __floats2bfloat162_rn(b.z, b.w)};
    *reinterpret_cast<uint4*>(nope + (size_t(t) * H + h) * Dn + 8 * c) = *reinterpret_cast<const uint4*>(v);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < H * half; e += blockDim.x) {
    const int h = e / half, i = e - h * half;
    const float2 x = *reinterpret_cast<const float2*>(qt + size_t(h) * qd + Dn + 2 * i);
    float y0, y1;
    rope_rotate(x.x, x.y, cs[i], cs[kMaxRopeHalf + i], y0, y1);
    *reinterpret_cast<__nv_bfloat162*>(out + (size_t(t) * H + h) * out_hd + out_col0 + 2 * i) =
        __floats2bfloat162_rn(y0, y1);
  }
}

}  // namespace

void launch_mla_kv_write(const float* kv, int T, int Dl, int Dr, const float* norm_w, float eps, const int32_t* pos,
                         const RopeFreqs& f, float af, const KvDst& dst, cudaStream_t st) {
  if (T) launch_k(mla_kv_write_kernel, T, row_threads(Dl), 0, st, kv, Dl, Dr, norm_w, eps, pos, f, af, dst);
}

void launch_indexer_key_write(const float* k, int T, int Di, const float* ln_w, const float* ln_b, float eps,
                              int rot_dim, const int32_t* pos, const RopeFreqs& f, float af, bool hadamard,
                              const KvDst& dst, cudaStream_t st) {
  if (T)
    launch_k(indexer_key_write_kernel, T, row_threads(Di), 0, st, k, Di, ln_w, ln_b, eps, rot_dim, pos, f, af, hadamard,
             dst);
}

void launch_rope_copy(const float* q, int T, int H, int qd, int Dn, int Dr, float* out, int out_hd, int out_col0,
                      const int32_t* pos, const RopeFreqs& f, float af, cudaStream_t st) {
  const dim3 grid{unsigned(T), unsigned((H * (Dr / 2) + kRopeCopyPairs - 1) / kRopeCopyPairs)};
  if (T && H && Dr)
    launch_k(rope_copy_kernel, grid, kRopeCopyPairs, 0, st, q, H, qd, Dn, Dr, out, out_hd, out_col0, pos, f, af);
}

void launch_q_split_bf16(const float* q, int T, int H, int qd, int Dn, int Dr, uint16_t* nope, uint16_t* out,
                         int out_hd, int out_col0, const int32_t* pos, const RopeFreqs& f, float af, cudaStream_t st) {
  if (T && H) launch_k(q_split_bf16_kernel, T, 256, 0, st, q, H, qd, Dn, Dr, nope, out, out_hd, out_col0, pos, f, af);
}

}  // namespace ds::backend::cuda
