// Per-row arithmetic shared by the separate row kernels (k_elementwise.cu: RMSNorm, LayerNorm, RoPE) and the
// fused attention-block kernels (k_kv_fused.cu) that replace chains of them, so that a fused kernel's
// results equal the chain's bit for bit: the same block sizes, the same reduction order, and roundings
// written out (__fmul_rn & co. are never contracted into FMAs by nvcc or ptxas, so the result does not
// depend on how the surrounding kernel was compiled).
#pragma once
#include <cuda_runtime.h>

namespace ds::backend::cuda {

// Threads of a one-block-per-row kernel for rows of n elements.
__host__ __device__ inline int row_threads(int n) { return n >= 1024 ? 512 : n >= 256 ? 256 : n >= 64 ? 64 : 32; }

// RMSNorm rows of up to 4 * kNormVec * blockDim.x floats are held in registers as float4s (rmsnorm_vec_kernel).
constexpr int kNormVec = 4;

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result. `red` holds 32
// floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.f;
  for (int i = 0; i < nw; ++i) s += red[i];  // fixed order: deterministic
  return s;
}

// The cosine and sine (times the attention factor) of frequency inv_freq at position pos: the fp32 angle
// as the references compute it.
__device__ __forceinline__ void rope_cos_sin(float inv_freq, int pos, float af, float& c, float& s) {
  const float angle = __fmul_rn(inv_freq, float(pos));
  c = __fmul_rn(cosf(angle), af);
  s = __fmul_rn(sinf(angle), af);
}

// One rotated pair, as the CPU backend computes it (x0 c - x1 s, x1 c + x0 s, no FMA).
__device__ __forceinline__ void rope_rotate(float x0, float x1, float c, float s, float& y0, float& y1) {
  y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}

// LayerNorm's per-element steps (layernorm_kernel): the squared deviation accumulated with one FMA, and
// (x - mean) r w + b with the last multiply-add fused.
__device__ __forceinline__ float ln_acc_sq(float d, float acc) { return __fmaf_rn(d, d, acc); }
__device__ __forceinline__ float ln_out(float d, float r, float w, float b) { return __fmaf_rn(__fmul_rn(d, r), w, b); }

}  // namespace ds::backend::cuda
