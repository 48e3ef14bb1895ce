// Element-wise and per-row kernels: embedding, RMSNorm (+ residual), LayerNorm, add/scale, SwiGLU, RoPE
// (both layouts), dtype conversions, cache row writes/gathers, causal index rows.
// fp32 math in the same order of operations as the CPU backend where it matters (norms, RoPE angles).
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/row_math.cuh"

namespace ds::backend::cuda {

namespace {
inline unsigned blocks_for(size_t n, int threads, unsigned cap = 65535u * 16u) {
  size_t b = (n + threads - 1) / threads;
  return unsigned(b < cap ? (b ? b : 1) : cap);
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

__global__ void fill_u32_kernel(uint32_t* p, uint32_t v, size_t n) {
  pdl_prologue();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) p[i] = v;
}

__global__ void embedding_kernel(const void* table, bool bf16, const int32_t* ids, int H, float* out, int first,
                                 int rows) {
  pdl_prologue();
  const int t = blockIdx.x;
  const int local = ids[t] - first;
  float* o = out + size_t(t) * H;
  if (local < 0 || local >= rows) {  // another rank's part of the vocabulary
    for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = 0.f;
    return;
  }
  const size_t row = size_t(local) * H;
  if (bf16) {
    const uint16_t* tb = static_cast<const uint16_t*>(table) + row;
    for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = bf16_bits_to_f32(tb[i]);
  } else {
    const float* tf = static_cast<const float*>(table) + row;
    for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = tf[i];
  }
}

__global__ void rmsnorm_kernel(const float* x, float* residual, const float* w, float* y, int n, float eps) {
  pdl_prologue();
  __shared__ float red[32];
  const size_t off = size_t(blockIdx.x) * n;
  const float* src = x + off;
  if (residual) {  // residual += x, then normalise the residual
    float* r = residual + off;
    for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] += src[i];
    src = r;  // each thread re-reads only what it wrote: no barrier needed
  }
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(src[i], src[i], ss);
  ss = block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / float(n) + eps);
  float* o = y + off;
  for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (src[i] * r);
}

// The same for rows of up to 4 * kNormVec * blockDim.x floats (n % 4 == 0): the row is read once into
// registers as float4s, residual and input loads all in flight together (the loop above re-reads the row
// three times and serialises each load behind the previous store: ~10 us for one 7168-wide row).
// (k_kv_fused.cu's mla_kv_write_kernel repeats this kernel's arithmetic: change both together.)
__global__ void rmsnorm_vec_kernel(const float* __restrict__ x, float* __restrict__ residual,
                                   const float* __restrict__ w, float* __restrict__ y, int n, float eps) {
  const int n4 = n / 4;
  // The norm's weight is read before the wait (pdl.cuh's exception): off the critical path.
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float4 g[kNormVec];
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < n4) g[k] = w4[i];
  }
  pdl_prologue();
  __shared__ float red[32];
  const size_t off = size_t(blockIdx.x) * n;
  const float4* x4 = reinterpret_cast<const float4*>(x + off);
  float4* r4 = residual ? reinterpret_cast<float4*>(residual + off) : nullptr;
  float4 v[kNormVec];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i >= n4) continue;
    float4 a = x4[i];
    if (r4) {
      const float4 b = r4[i];
      a = make_float4(b.x + a.x, b.y + a.y, b.z + a.z, b.w + a.w);
      r4[i] = a;
    }
    v[k] = a;
    ss = fmaf(a.x, a.x, ss);
    ss = fmaf(a.y, a.y, ss);
    ss = fmaf(a.z, a.z, ss);
    ss = fmaf(a.w, a.w, ss);
  }
  ss = block_sum(ss, red);
  const float r = 1.0f / sqrtf(ss / float(n) + eps);
  float4* y4 = reinterpret_cast<float4*>(y + off);
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i >= n4) continue;
    y4[i] = make_float4(g[k].x * (v[k].x * r), g[k].y * (v[k].y * r), g[k].z * (v[k].z * r), g[k].w * (v[k].w * r));
  }
}

__global__ void layernorm_kernel(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  pdl_prologue();
  __shared__ float red[32];
  const size_t off = size_t(blockIdx.x) * n;
  const float* xr = x + off;
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
  const float mean = block_sum(s, red) / float(n);
  float v = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v = ln_acc_sq(xr[i] - mean, v);
  const float var = block_sum(v, red) / float(n);
  const float r = 1.0f / sqrtf(var + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[off + i] = ln_out(xr[i] - mean, r, w[i], b[i]);
}

__global__ void add_kernel(float* y, const float* x, size_t n) {
  pdl_prologue();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] += x[i];
}
__global__ void scale_kernel(float* y, float s, size_t n) {
  pdl_prologue();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] *= s;
}
__global__ void silu_mul_kernel(const float* g, const float* u, float* y, size_t n) {
  pdl_prologue();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

// Block (half, heads_per_block): thread (i, hh) rotates frequency i of one head of token blockIdx.x.
// (One thread per frequency looping over 128 heads was a chain of 128 dependent loads and stores: 22 us
// for one token.)
__global__ void rope_kernel(float* x, int row, int col0, int head_stride, int nheads, int half, const int32_t* pos,
                            RopeFreqs f, float af, bool interleaved) {
  pdl_prologue();
  const int t = blockIdx.x, i = threadIdx.x, h = blockIdx.y * blockDim.y + threadIdx.y;
  if (i >= half || h >= nheads) return;
  float c, s;
  rope_cos_sin(f.inv_freq[i], pos[t], af, c, s);  // fp32 angle, as the references compute it
  const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
  float* v = x + size_t(t) * row + col0 + size_t(h) * head_stride;
  rope_rotate(v[a], v[b], c, s, v[a], v[b]);
}

__global__ void f32_to_bf16_kernel(const float* x, __nv_bfloat16* y, size_t n) {
  pdl_prologue();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void bf16_to_f32_kernel(const uint16_t* x, float* y, size_t n) {
  pdl_prologue();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = bf16_bits_to_f32(x[i]);
}

__global__ void cache_write_kernel(float* pool, int D, int col0, const float* rows, int n, const int32_t* slots) {
  pdl_prologue();
  const int t = blockIdx.x;
  if (slots[t] < 0) return;  // a padding row of a captured step
  float* dst = pool + size_t(slots[t]) * D + col0;
  const float* src = rows + size_t(t) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}
// BF16 KV pools: rows rounded to nearest even on the way in, widened exactly on the way out.
__global__ void cache_write_bf16_kernel(__nv_bfloat16* pool, int D, int col0, const float* rows, int n,
                                        const int32_t* slots) {
  pdl_prologue();
  const int t = blockIdx.x;
  if (slots[t] < 0) return;  // a padding row of a captured step
  __nv_bfloat16* dst = pool + size_t(slots[t]) * D + col0;
  const float* src = rows + size_t(t) * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void gather_rows_bf16_kernel(const uint16_t* src, int D, const int32_t* idx, float* out) {
  pdl_prologue();
  const int r = blockIdx.x;
  const uint16_t* s = src + size_t(idx[r]) * D;
  float* o = out + size_t(r) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) o[i] = bf16_bits_to_f32(s[i]);
}
__global__ void gather_rows_kernel(const float* src, int D, const int32_t* idx, float* out) {
  pdl_prologue();
  const int r = blockIdx.x;
  const float* s = src + size_t(idx[r]) * D;
  float* o = out + size_t(r) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) o[i] = s[i];
}
__global__ void scatter_add_rows_kernel(float* y, int D, const int32_t* idx, const float* w, const float* x) {
  pdl_prologue();
  const int r = blockIdx.x;
  float* o = y + size_t(idx[r]) * D;
  const float* s = x + size_t(r) * D;
  const float wr = w[r];
  for (int i = threadIdx.x; i < D; i += blockDim.x) o[i] = fmaf(wr, s[i], o[i]);
}
__global__ void causal_index_kernel(const int32_t* pos, int K, int32_t* out) {
  pdl_prologue();
  const int t = blockIdx.x;
  const int p = pos[t];
  for (int j = threadIdx.x; j < K; j += blockDim.x) out[size_t(t) * K + j] = j <= p ? j : -1;
}

}  // namespace

void launch_fill_u32(void* p, uint32_t value, size_t words, cudaStream_t st) {
  if (words) launch_k(fill_u32_kernel, blocks_for(words, 256), 256, 0, st, static_cast<uint32_t*>(p), value, words);
}
void launch_embedding(const void* table, bool table_bf16, const int32_t* ids, int T, int H, float* out, int first,
                      int rows, cudaStream_t st) {
  if (T) launch_k(embedding_kernel, T, row_threads(H), 0, st, table, table_bf16, ids, H, out, first, rows);
}
void launch_rmsnorm(const float* x, float* residual, const float* w, float* y, int T, int n, float eps,
                    cudaStream_t st) {
  if (!T) return;
  const int threads = row_threads(n);
  const bool aligned = ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(residual) |
                        reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(y)) & 15) == 0;
  if (aligned && n % 4 == 0 && n / 4 <= kNormVec * threads)
    launch_k(rmsnorm_vec_kernel, T, threads, 0, st, x, residual, w, y, n, eps);
  else
    launch_k(rmsnorm_kernel, T, threads, 0, st, x, residual, w, y, n, eps);
}
void launch_layernorm(const float* x, const float* w, const float* b, float* y, int T, int n, float eps,
                      cudaStream_t st) {
  if (T) launch_k(layernorm_kernel, T, row_threads(n), 0, st, x, w, b, y, n, eps);
}
void launch_add(float* y, const float* x, size_t n, cudaStream_t st) {
  if (n) launch_k(add_kernel, blocks_for(n, 256), 256, 0, st, y, x, n);
}
void launch_scale(float* y, float s, size_t n, cudaStream_t st) {
  if (n) launch_k(scale_kernel, blocks_for(n, 256), 256, 0, st, y, s, n);
}
void launch_silu_mul(const float* g, const float* u, float* y, size_t n, cudaStream_t st) {
  if (n) launch_k(silu_mul_kernel, blocks_for(n, 256), 256, 0, st, g, u, y, n);
}
void launch_rope(float* x, int T, int row, int col0, int head_stride, int nheads, int rot_dim, const int32_t* pos,
                 const RopeFreqs& f, float attention_factor, bool interleaved, cudaStream_t st) {
  const int half = rot_dim / 2;
  if (!T || !half || !nheads) return;
  const dim3 block(unsigned(half), unsigned(std::max(1, std::min(nheads, 256 / half))));
  const dim3 grid(unsigned(T), unsigned((nheads + int(block.y) - 1) / int(block.y)));
  launch_k(rope_kernel, grid, block, 0, st,
      x, row, col0, head_stride, nheads, half, pos, f, attention_factor, interleaved);
}
void launch_f32_to_bf16(const float* x, uint16_t* y, size_t n, cudaStream_t st) {
  if (n) launch_k(f32_to_bf16_kernel, blocks_for(n, 256), 256, 0, st, x, reinterpret_cast<__nv_bfloat16*>(y), n);
}
void launch_bf16_to_f32(const uint16_t* x, float* y, size_t n, cudaStream_t st) {
  if (n) launch_k(bf16_to_f32_kernel, blocks_for(n, 256), 256, 0, st, x, y, n);
}
void launch_cache_write(float* pool, int D, int col0, const float* rows, int n, const int32_t* slots, int T,
                        cudaStream_t st) {
  if (T) launch_k(cache_write_kernel, T, row_threads(n), 0, st, pool, D, col0, rows, n, slots);
}
void launch_cache_write_bf16(uint16_t* pool, int D, int col0, const float* rows, int n, const int32_t* slots, int T,
                             cudaStream_t st) {
  if (T)
    launch_k(cache_write_bf16_kernel, T, row_threads(n), 0, st, reinterpret_cast<__nv_bfloat16*>(pool), D, col0,
             rows, n, slots);
}
void launch_gather_rows_bf16(const uint16_t* src, int D, const int32_t* idx, int n, float* out, cudaStream_t st) {
  if (n) launch_k(gather_rows_bf16_kernel, n, row_threads(D), 0, st, src, D, idx, out);
}
// blockIdx.y = row, words of W across the x blocks.
template <typename W>
__global__ void copy_cols_kernel(W* dst, size_t dst_pitch, const W* src, size_t src_pitch, size_t words) {
  pdl_prologue();
  W* d = dst + size_t(blockIdx.y) * dst_pitch;
  const W* s = src + size_t(blockIdx.y) * src_pitch;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < words; i += size_t(gridDim.x) * blockDim.x)
    d[i] = s[i];
}
void launch_copy_cols(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width, int64_t T,
                      cudaStream_t st) {
  if (T == 0 || width == 0) return;
  if (T > 65535) {  // grid.y: chunks of rows
    for (int64_t t0 = 0; t0 < T; t0 += 65535)
      launch_copy_cols(static_cast<char*>(dst) + size_t(t0) * dst_pitch, dst_pitch,
                       static_cast<const char*>(src) + size_t(t0) * src_pitch, src_pitch, width,
                       std::min<int64_t>(65535, T - t0), st);
    return;
  }
  // The widest word that divides both addresses, both pitches and the width.
  const size_t all = reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) | dst_pitch | src_pitch | width;
  auto go = [&](auto w) {
    using W = decltype(w);
    const size_t words = width / sizeof(W);
    const dim3 grid(unsigned(std::min<size_t>((words + 255) / 256, 64)), unsigned(T));
    launch_k(copy_cols_kernel<W>, grid, 256, 0, st, static_cast<W*>(dst), dst_pitch / sizeof(W),
             static_cast<const W*>(src), src_pitch / sizeof(W), words);
  };
  if (all % 16 == 0) go(int4{});
  else if (all % 4 == 0) go(uint32_t{});
  else if (all % 2 == 0) go(uint16_t{});
  else go(uint8_t{});
}
// One block per row, copying in the widest word the row size allows (rows start at multiples of it).
template <typename W>
__global__ void gather_words_kernel(const W* pool, size_t words, const int32_t* idx, W* out) {
  pdl_prologue();
  const W* s = pool + size_t(idx[blockIdx.x]) * words;
  W* d = out + size_t(blockIdx.x) * words;
  for (size_t i = threadIdx.x; i < words; i += blockDim.x) d[i] = s[i];
}
template <typename W>
__global__ void scatter_words_kernel(W* pool, size_t words, const int32_t* idx, const W* in) {
  pdl_prologue();
  W* d = pool + size_t(idx[blockIdx.x]) * words;
  const W* s = in + size_t(blockIdx.x) * words;
  for (size_t i = threadIdx.x; i < words; i += blockDim.x) d[i] = s[i];
}
void launch_gather_bytes(const void* pool, size_t rb, const int32_t* idx, int n, void* out, cudaStream_t st) {
  if (!n) return;
  if (rb % 16 == 0)
    launch_k(gather_words_kernel<int4>, n, 128, 0, st,
        static_cast<const int4*>(pool), rb / 16, idx, static_cast<int4*>(out));
  else if (rb % 4 == 0)
    launch_k(gather_words_kernel<uint32_t>, n, 256, 0, st,
        static_cast<const uint32_t*>(pool), rb / 4, idx, static_cast<uint32_t*>(out));
  else
    launch_k(gather_words_kernel<uint8_t>, n, 256, 0, st,
        static_cast<const uint8_t*>(pool), rb, idx, static_cast<uint8_t*>(out));
}
void launch_scatter_bytes(void* pool, size_t rb, const int32_t* idx, int n, const void* in, cudaStream_t st) {
  if (!n) return;
  if (rb % 16 == 0)
    launch_k(scatter_words_kernel<int4>, n, 128, 0, st,
        static_cast<int4*>(pool), rb / 16, idx, static_cast<const int4*>(in));
  else if (rb % 4 == 0)
    launch_k(scatter_words_kernel<uint32_t>, n, 256, 0, st,
        static_cast<uint32_t*>(pool), rb / 4, idx, static_cast<const uint32_t*>(in));
  else
    launch_k(scatter_words_kernel<uint8_t>, n, 256, 0, st,
        static_cast<uint8_t*>(pool), rb, idx, static_cast<const uint8_t*>(in));
}
void launch_gather_rows(const float* src, int D, const int32_t* idx, int n, float* out, cudaStream_t st) {
  if (n) launch_k(gather_rows_kernel, n, row_threads(D), 0, st, src, D, idx, out);
}
void launch_scatter_add_rows(float* y, int D, const int32_t* idx, const float* w, const float* x, int n,
                             cudaStream_t st) {
  if (n) launch_k(scatter_add_rows_kernel, n, row_threads(D), 0, st, y, D, idx, w, x);
}
void launch_causal_index(const int32_t* pos, int T, int K, int32_t* out, cudaStream_t st) {
  if (T && K) launch_k(causal_index_kernel, T, 256, 0, st, pos, K, out);
}

}  // namespace ds::backend::cuda
