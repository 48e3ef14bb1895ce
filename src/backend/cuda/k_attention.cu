// MLA attention kernels.
// Absorbed (latent) form, sparse over index lists into the paged latent pool: FlashDecoding-style.
// A block owns one query token, 16 heads and one slice of its key list; it gathers 16 key rows at a time
// through the page table into shared memory, scores them against the 16 heads (one thread per
// head x key), keeps a running max / sum per head (online softmax) and accumulates p . c over the 512
// latent columns (thread = head x 4 columns x 8 groups). Slices are merged by a second kernel.
// Every head of a token reads the same key rows (MQA in latent space), so a block's 16 heads share each
// gathered row. SIMT fp32: exact, but far from tensor-core speed (see docs/PERF.md).
// Expanded form: one block per (token, head) over per-head K/V; the independent check of the absorbed one.
#include <cuda_bf16.h>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/per_device.h"

namespace ds::backend::cuda {

namespace {
constexpr int HG = 16, TK = 16, NT = 256;

__device__ __forceinline__ int slot_of(const DevBatch& b, int seq, int p) {
  const int lo = b.pt_off[seq], hi = b.pt_off[seq + 1];
  const int pg = p / b.page_size;
  if (p < 0 || pg >= hi - lo) return -1;
  return b.pt[lo + pg] * b.page_size + p % b.page_size;
}

__device__ __forceinline__ float4 f4_zero() { return make_float4(0.f, 0.f, 0.f, 0.f); }

__host__ __device__ inline int pitch_of(int D) { return (D + 3) / 4 * 4 + 4; }  // +4 floats: rows land 4 banks apart

// POOL: 0 fp32 rows, 1 bf16 rows, 2 packed FP8 rows (dequantised here as they are gathered).
template <int POOL>
__global__ void __launch_bounds__(NT) mla_kernel(MlaArgs a) {
  pdl_prologue();
  extern __shared__ float4 sm4[];
  float* sm = reinterpret_cast<float*>(sm4);
  const int Dp = pitch_of(a.D), D4 = a.D / 4;
  float* qs = sm;              // [HG][Dp]
  float* ks = qs + HG * Dp;    // [TK][Dp]
  float* ps = ks + TK * Dp;    // [HG][TK]
  int* kslot = reinterpret_cast<int*>(ps + HG * TK);  // [TK]
  __shared__ int tile_first;  // the first index of the current tile
  const int split = blockIdx.x, h0 = blockIdx.y * HG, t = blockIdx.z;
  const int tid = threadIdx.x, hl = tid / 16, r = tid % 16;
  const int h = h0 + hl;
  const bool hvalid = h < a.H;
  for (int i = tid; i < HG * D4; i += NT) {
    const int hh = i / D4, c = i % D4;
    float4 v = f4_zero();
    if (h0 + hh < a.H) v = reinterpret_cast<const float4*>(a.q + (size_t(t) * a.H + h0 + hh) * a.D)[c];
    reinterpret_cast<float4*>(qs + hh * Dp)[c] = v;
  }
  const int chunk = ((a.K + a.nsplit - 1) / a.nsplit + TK - 1) / TK * TK;
  const int j_begin = split * chunk, j_end = min(a.K, j_begin + chunk);
  const int seq = a.b.seq_of_token[t];
  const int32_t* idx = a.index + size_t(t) * a.K;
  float m_run = -INFINITY, l_run = 0.f;
  float4 acc[kMlaMaxDl / 64];
#pragma unroll
  for (int i = 0; i < kMlaMaxDl / 64; ++i) acc[i] = f4_zero();
  for (int j0 = j_begin; j0 < j_end; j0 += TK) {
    __syncthreads();  // the previous tile is consumed (and q is loaded)
    if (tid < TK) {
      const int j = j0 + tid;
      const int p = j < j_end ? idx[j] : -1;
      kslot[tid] = p >= 0 ? slot_of(a.b, seq, p) : -1;
      if (tid == 0) tile_first = p;
    }
    __syncthreads();
    // -1 pads only the tail of a list: the rest of this slice is empty (a captured step's lists are
    // index_topk wide whatever the context).
    if (tile_first < 0) break;
    for (int i = tid; i < TK * D4; i += NT) {
      const int rr = i / D4, c = i % D4, s = kslot[rr];
      float4 v = f4_zero();
      if (s >= 0) {
        if constexpr (POOL == 2) {
          v = kv_load4(static_cast<const uint8_t*>(a.pool) + size_t(s) * a.kv.bytes, a.kv, 4 * c);
        } else if constexpr (POOL == 1) {
          const uint2 u = reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(a.pool) + size_t(s) * a.D)[c];
          v = make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                          __uint_as_float(u.y & 0xffff0000u));
        } else {
          v = reinterpret_cast<const float4*>(static_cast<const float*>(a.pool) + size_t(s) * a.D)[c];
        }
      }
      reinterpret_cast<float4*>(ks + rr * Dp)[c] = v;
    }
    __syncthreads();
    float sc = -INFINITY;
    if (hvalid && kslot[r] >= 0) {
      const float4* qv = reinterpret_cast<const float4*>(qs + hl * Dp);
      const float4* kv = reinterpret_cast<const float4*>(ks + r * Dp);
      float d = 0.f;
      for (int c = 0; c < D4; ++c) {
        const float4 x = qv[c], y = kv[c];
        d = fmaf(x.x, y.x, d);
        d = fmaf(x.y, y.y, d);
        d = fmaf(x.z, y.z, d);
        d = fmaf(x.w, y.w, d);
      }
      sc = d * a.scale;
    }
    float mt = sc;
    for (int o = 8; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
    const float m_new = fmaxf(m_run, mt);
    float p = 0.f, alpha = 1.f;
    if (m_new != -INFINITY) {
      p = sc == -INFINITY ? 0.f : expf(sc - m_new);
      alpha = m_run == -INFINITY ? 0.f : expf(m_run - m_new);
    }
    float psum = p;
    for (int o = 8; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, o);
    l_run = l_run * alpha + psum;
    m_run = m_new;
    ps[hl * TK + r] = p;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kMlaMaxDl / 64; ++i) {
      acc[i].x *= alpha, acc[i].y *= alpha, acc[i].z *= alpha, acc[i].w *= alpha;
    }
    for (int rr = 0; rr < TK; ++rr) {
      const float pr = ps[hl * TK + rr];
      const float* krow = ks + rr * Dp + r * 4;
#pragma unroll
      for (int i = 0; i < kMlaMaxDl / 64; ++i) {
        if (r * 4 + 64 * i < a.Dl) {
          const float4 kv = *reinterpret_cast<const float4*>(krow + 64 * i);
          acc[i].x = fmaf(pr, kv.x, acc[i].x);
          acc[i].y = fmaf(pr, kv.y, acc[i].y);
          acc[i].z = fmaf(pr, kv.z, acc[i].z);
          acc[i].w = fmaf(pr, kv.w, acc[i].w);
        }
      }
    }
  }
  if (!hvalid) return;
  if (a.nsplit == 1) {
    const float inv = l_run > 0.f ? 1.0f / l_run : 0.f;
    float* o = a.out + (size_t(t) * a.H + h) * a.Dl;
#pragma unroll
    for (int i = 0; i < kMlaMaxDl / 64; ++i) {
      const int c = r * 4 + 64 * i;
      if (c < a.Dl)
        *reinterpret_cast<float4*>(o + c) = make_float4(acc[i].x * inv, acc[i].y * inv, acc[i].z * inv, acc[i].w * inv);
    }
  } else {
    const size_t row = (size_t(split) * a.T + t) * a.H + h;
    float* o = a.part_o + row * a.Dl;
#pragma unroll
    for (int i = 0; i < kMlaMaxDl / 64; ++i) {
      const int c = r * 4 + 64 * i;
      if (c < a.Dl) *reinterpret_cast<float4*>(o + c) = acc[i];
    }
    if (r == 0) a.part_m[row] = m_run, a.part_l[row] = l_run;
  }
}

__global__ void mla_combine_kernel(MlaArgs a) {
  pdl_prologue();
  // The splits' maxima and weights go through shared memory once; the column loop then keeps several
  // independent partial loads in flight (unrolled), instead of one dependent load per split and column.
  __shared__ float ms[kMlaMaxSplit], ls[kMlaMaxSplit];
  const int th = blockIdx.x;  // t * H + h
  const size_t stride = size_t(a.T) * a.H;
  for (int s = threadIdx.x; s < a.nsplit; s += blockDim.x) ms[s] = a.part_m[s * stride + th], ls[s] = a.part_l[s * stride + th];
  __syncthreads();
  float M = -INFINITY;
  for (int s = 0; s < a.nsplit; ++s) M = fmaxf(M, ms[s]);
  float L = 0.f;
  for (int s = 0; s < a.nsplit; ++s)
    if (ms[s] != -INFINITY) L += expf(ms[s] - M) * ls[s];
  const float inv = L > 0.f ? 1.0f / L : 0.f;
  __syncthreads();  // every thread has read ms: reuse ls for the weights
  for (int s = threadIdx.x; s < a.nsplit; s += blockDim.x) ls[s] = ms[s] != -INFINITY ? expf(ms[s] - M) : 0.f;
  __syncthreads();
  for (int c = threadIdx.x; c < a.Dl / 4; c += blockDim.x) {  // 4 columns a thread (Dl % 4 == 0)
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    const float4* po = reinterpret_cast<const float4*>(a.part_o + size_t(th) * a.Dl) + c;
#pragma unroll 8
    for (int s = 0; s < a.nsplit; ++s)
      if (ls[s] != 0.f) {
        const float4 x = po[s * stride * (a.Dl / 4)];
        v.x += ls[s] * x.x, v.y += ls[s] * x.y, v.z += ls[s] * x.z, v.w += ls[s] * x.w;
      }
    if (a.out_bf16) {  // the bf16 hand-off to mla_absorb_out
      const __nv_bfloat162 b[2] = {__floats2bfloat162_rn(v.x * inv, v.y * inv),
                                   __floats2bfloat162_rn(v.z * inv, v.w * inv)};
      reinterpret_cast<uint2*>(a.out_bf16 + size_t(th) * a.Dl)[c] = *reinterpret_cast<const uint2*>(b);
    } else {
      reinterpret_cast<float4*>(a.out + size_t(th) * a.Dl)[c] = make_float4(v.x * inv, v.y * inv, v.z * inv, v.w * inv);
    }
  }
}

// ---- expanded form ----
__device__ float block_reduce(float v, float* red, bool is_max) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, w) : v + w;
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float r = is_max ? -INFINITY : 0.f;
  for (int i = 0; i < int(blockDim.x) / 32; ++i) r = is_max ? fmaxf(r, red[i]) : r + red[i];
  return r;
}

__global__ void expanded_kernel(ExpandedArgs a) {
  pdl_prologue();
  __shared__ float red[32];
  const int th = blockIdx.x, t = th / a.H, h = th % a.H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  const int32_t* idx = a.index + size_t(t) * a.K;
  const int row0 = a.key_row0[a.seq_of_token[t]];
  const float* q = a.q + size_t(th) * a.Dqk;
  float* sc = a.scores + size_t(th) * a.K;
  for (int j = warp; j < a.K; j += nw) {
    const int p = idx[j];
    float d = 0.f;
    if (p >= 0) {
      const float* k = a.k + (size_t(row0 + p) * a.H + h) * a.Dqk;
      for (int c = lane; c < a.Dqk; c += 32) d = fmaf(q[c], k[c], d);
      for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    }
    if (lane == 0) sc[j] = p >= 0 ? d * a.scale : -INFINITY;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int j = threadIdx.x; j < a.K; j += blockDim.x) m = fmaxf(m, sc[j]);
  m = block_reduce(m, red, true);
  float s = 0.f;
  for (int j = threadIdx.x; j < a.K; j += blockDim.x) {
    const float e = sc[j] == -INFINITY ? 0.f : expf(sc[j] - m);
    sc[j] = e;
    s += e;
  }
  s = block_reduce(s, red, false);
  const float inv = s > 0.f ? 1.0f / s : 0.f;
  __syncthreads();
  for (int c = threadIdx.x; c < a.Dv; c += blockDim.x) {
    float o = 0.f;
    for (int j = 0; j < a.K; ++j) {
      const int p = idx[j];
      if (p >= 0) o = fmaf(sc[j] * inv, a.v[(size_t(row0 + p) * a.H + h) * a.Dv + c], o);
    }
    a.out[size_t(th) * a.Dv + c] = o;
  }
}
}  // namespace

size_t mla_smem_bytes(int D) { return (size_t(HG + TK) * pitch_of(D) + HG * TK + TK) * sizeof(float); }

void launch_mla_absorbed(const MlaArgs& a, cudaStream_t st) {
  if (a.T == 0 || a.H == 0) return;
  const size_t smem = mla_smem_bytes(a.D);
  static std::atomic<uint64_t> attr_set{0};  // per device: CUDA applies attributes to the current one
  once_per_device(attr_set, [&] {
    cudaFuncSetAttribute(mla_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(mla_smem_bytes(kMlaMaxD)));
    cudaFuncSetAttribute(mla_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(mla_smem_bytes(kMlaMaxD)));
    cudaFuncSetAttribute(mla_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(mla_smem_bytes(kMlaMaxD)));
  });
  dim3 grid(unsigned(a.nsplit), unsigned((a.H + HG - 1) / HG), unsigned(a.T));
  if (a.pool_fp8) launch_k(mla_kernel<2>, grid, NT, smem, st, a);
  else if (a.pool_bf16) launch_k(mla_kernel<1>, grid, NT, smem, st, a);
  else launch_k(mla_kernel<0>, grid, NT, smem, st, a);
  if (a.nsplit > 1) launch_mla_combine(a, st);
}

void launch_mla_combine(const MlaArgs& a, cudaStream_t st) {
  if (a.T && a.H) launch_k(mla_combine_kernel, unsigned(a.T * a.H), 128, 0, st, a);
}

void launch_attention_expanded(const ExpandedArgs& a, cudaStream_t st) {
  if (a.T && a.H) launch_k(expanded_kernel, unsigned(a.T * a.H), 128, 0, st, a);
}

}  // namespace ds::backend::cuda
