// The lightning indexer: scores s(t, j) = sum_h w[t,h] * relu(q[t,h,:] . k_j) over every earlier
// position j <= p of the query's sequence (keys gathered through the page table), then a causal top-k per
// query by radix select on the scores' bits (4 passes of 8 bits, warp-aggregated shared-memory
// histograms), and an ordered compaction that writes the chosen positions ascending. Among equal scores
// the earlier positions win, as in the CPU backend. Queries whose context fits in top-k take every
// position without scoring.
#include <algorithm>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/kv_fp8.cuh"
#include "backend/cuda/per_device.h"

namespace ds::backend::cuda {

namespace {
constexpr int KT = 64;  // keys per score block

__device__ __forceinline__ int slot_of(const DevBatch& b, int seq, int p) {
  const int lo = b.pt_off[seq], hi = b.pt_off[seq + 1];
  const int pg = p / b.page_size;
  if (p < 0 || pg >= hi - lo) return -1;
  return b.pt[lo + pg] * b.page_size + p % b.page_size;
}

size_t score_smem(int heads, int head_dim) {
  return (size_t(heads) * head_dim + size_t(KT) * (head_dim + 4) + heads + 16 * KT) * sizeof(float);
}

// grid (key ranges of a.tiles * 64 keys, Tc); 256 threads. Thread (kq = tid % 16, hg = tid / 16) computes
// the dot products of keys kq + 16i (i < 4) with heads hg + 16j (j < 4, then the next 64 heads): each
// shared-memory float4 of a key or a query feeds 4 dot products (the kernel is bound by those reads).
// The query (heads x head_dim) is loaded once per block and reused over the block's tiles.
constexpr int kHG = 16;  // head groups per block (threads per key quad: 256 / 16 key quads)
__global__ void __launch_bounds__(256) score_kernel(IndexerArgs a) {
  pdl_prologue();
  extern __shared__ float4 sm4[];
  float* sm = reinterpret_cast<float*>(sm4);
  const int Dh = a.head_dim, Dp = Dh + 4, D4 = Dh / 4;
  float* qs = sm;                       // [heads][Dh]
  float* ks = qs + a.heads * Dh;        // [KT][Dp]
  float* ws = ks + KT * Dp;             // [heads]
  float* part = ws + a.heads;           // [kHG][KT]
  const int tc = blockIdx.y, t = a.t0 + tc;
  const int p = a.b.pos_of_token[t];
  const int jb = blockIdx.x * KT * a.tiles;
  if (p + 1 <= a.topk || jb > p) return;
  const int seq = a.b.seq_of_token[t];
  const int tid = threadIdx.x;
  for (int i = tid; i < a.heads * D4; i += 256)
    reinterpret_cast<float4*>(qs)[i] = reinterpret_cast<const float4*>(a.q + size_t(t) * a.heads * Dh)[i];
  for (int i = tid; i < a.heads; i += 256) ws[i] = a.w[size_t(t) * a.heads + i];
  const int kq = tid % 16, hg = tid / 16;
  for (int j0 = jb; j0 < jb + KT * a.tiles && j0 <= p; j0 += KT) {
    __syncthreads();  // q loaded / the previous tile consumed
    for (int i = tid; i < KT * D4; i += 256) {
      const int r = i / D4, c = i % D4, jj = j0 + r;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (jj <= p) {
        const int s = slot_of(a.b, seq, jj);
        if (s >= 0)
          v = a.k_fp8 ? kv_load4(a.k_fp8 + size_t(s) * a.kv.bytes, a.kv, 4 * c)  // packed FP8 keys
                      : reinterpret_cast<const float4*>(a.k_pool + size_t(s) * Dh)[c];
      }
      reinterpret_cast<float4*>(ks + r * Dp)[c] = v;
    }
    __syncthreads();
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int h0 = hg; h0 < a.heads; h0 += 4 * kHG) {
      float d[4][4] = {};  // [head j][key i]
      for (int c = 0; c < D4; ++c) {
        float4 kv[4], qv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) kv[i] = reinterpret_cast<const float4*>(ks + (kq + 16 * i) * Dp)[c];
#pragma unroll
        for (int j = 0; j < 4; ++j)
          qv[j] = h0 + kHG * j < a.heads ? reinterpret_cast<const float4*>(qs + (h0 + kHG * j) * Dh)[c]
                                         : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            d[j][i] = fmaf(qv[j].x, kv[i].x, d[j][i]);
            d[j][i] = fmaf(qv[j].y, kv[i].y, d[j][i]);
            d[j][i] = fmaf(qv[j].z, kv[i].z, d[j][i]);
            d[j][i] = fmaf(qv[j].w, kv[i].w, d[j][i]);
          }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int h = h0 + kHG * j;
        if (h < a.heads)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[i] = fmaf(ws[h], fmaxf(d[j][i], 0.f), acc[i]);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) part[hg * KT + kq + 16 * i] = acc[i];
    __syncthreads();
    if (tid < KT && j0 + tid <= p) {
      float sum = 0.f;
#pragma unroll
      for (int g = 0; g < kHG; ++g) sum += part[g * KT + tid];
      a.scores[size_t(tc) * a.L + j0 + tid] = sum;
    }
  }
}

// Order-preserving map of a float to an unsigned key (larger float, larger key; -0 == +0).
__device__ __forceinline__ uint32_t key_of(float x) {
  if (x == 0.f) x = 0.f;
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Exclusive prefix sum over the block (blockDim.x a multiple of 32); *total = the block's sum.
__device__ int block_exclusive_scan(int v, int* warp_sums, int* total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  int x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int s = lane < nw ? warp_sums[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += y;
    }
    if (lane < nw) warp_sums[lane] = s;
  }
  __syncthreads();
  const int res = (warp > 0 ? warp_sums[warp - 1] : 0) + x - v;
  *total = warp_sums[nw - 1];
  __syncthreads();  // warp_sums is reused by the next call
  return res;
}

// One block per query; each thread takes 8 consecutive scores per round (two 16-byte loads in flight),
// so a 128K context is 16 rounds per pass instead of 128 latency-bound ones.
constexpr int kTopkThreads = 1024, kItems = 8;

// The keys of scores j0 .. j0+7 (j0 a multiple of 8, rows 32-byte aligned), valid where j < end.
__device__ __forceinline__ void load_keys(const float* sc, int j0, int end, uint32_t* u, bool* valid) {
  float v[kItems];
  if (j0 + kItems <= end) {
    const float4 x0 = *reinterpret_cast<const float4*>(sc + j0), x1 = *reinterpret_cast<const float4*>(sc + j0 + 4);
    v[0] = x0.x, v[1] = x0.y, v[2] = x0.z, v[3] = x0.w, v[4] = x1.x, v[5] = x1.y, v[6] = x1.z, v[7] = x1.w;
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i) v[i] = j0 + i < end ? sc[j0 + i] : 0.f;
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    valid[i] = j0 + i < end;
    u[i] = key_of(v[i]);
  }
}

// The block writes, ascending from out[out_base], every position j in [begin, end) (begin a multiple
// of 8) whose key is above `thr`, and those equal to it while fewer than `ties` equal ones precede
// them (tie_base of them in earlier ranges): the top-k's ordered compaction, earliest ties first.
__device__ void take_above_threshold(const float* sc, int begin, int end, uint32_t thr, int ties, int out_base,
                                     int tie_base, int32_t* out, int* warp_sums) {
  for (int base = begin; base < end; base += blockDim.x * kItems) {
    const int j0 = base + threadIdx.x * kItems;
    uint32_t u[kItems];
    bool valid[kItems];
    load_keys(sc, j0, end, u, valid);
    int n_eq = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) n_eq += valid[i] && u[i] == thr;
    int eq_total, take_total;
    int eq_rank = tie_base + block_exclusive_scan(n_eq, warp_sums, &eq_total);
    bool take[kItems];
    int n_take = 0;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const bool eq = valid[i] && u[i] == thr;
      take[i] = (valid[i] && u[i] > thr) || (eq && eq_rank < ties);
      eq_rank += eq;
      n_take += take[i];
    }
    int pos = out_base + block_exclusive_scan(n_take, warp_sums, &take_total);
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      if (take[i]) out[pos++] = j0 + i;
    out_base += take_total;
    tie_base += eq_total;
  }
}
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(IndexerArgs a) {
  pdl_prologue();
  __shared__ uint32_t hist[256];
  __shared__ uint32_t s_prefix, s_mask;
  __shared__ int s_remaining;
  __shared__ bool s_whole_bin;  // the chosen bin is taken entirely: the later passes cannot change the set
  __shared__ int warp_sums[32];
  const int tc = blockIdx.x, t = a.t0 + tc;
  const int p = a.b.pos_of_token[t], n = p + 1;
  int32_t* out = a.out + size_t(t) * a.Kout;
  const int tid = threadIdx.x, lane = tid % 32;
  if (n <= a.topk) {
    for (int j = tid; j < a.Kout; j += blockDim.x) out[j] = j < n ? j : -1;
    return;
  }
  const float* sc = a.scores + size_t(tc) * a.L;  // L % 8 == 0: rows 32-byte aligned
  if (tid == 0) s_prefix = 0, s_mask = 0, s_remaining = a.topk, s_whole_bin = false;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    const uint32_t prefix = s_prefix, mask = s_mask;
    for (int base = 0; base < n; base += kTopkThreads * kItems) {
      uint32_t u[kItems];
      bool valid[kItems];
      load_keys(sc, base + tid * kItems, n, u, valid);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        // One shared atomic per key: the warp-aggregated form (__match_any_sync per key) was MIO-bound,
        // 2-4x slower (docs/PERF.md, "The indexer top-k without __match_any_sync").
        if (valid[i] && (u[i] & mask) == prefix) atomicAdd(&hist[(u[i] >> shift) & 255u], 1u);
      }
    }
    __syncthreads();
    if (tid < 32) {  // warp 0 finds the bin holding the remaining-th largest: lane l owns bins 255-8l down
      int c[8], tot = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) tot += c[i] = int(hist[255 - 8 * lane - i]);
      int incl = tot;
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const int rem = s_remaining;
      int cum = incl - tot;
      if (cum < rem && rem <= incl) {  // exactly one lane
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (cum + c[i] >= rem) {
            s_prefix = prefix | (uint32_t(255 - 8 * lane - i) << shift);
            s_mask = mask | (255u << shift);
            s_remaining = rem - cum;
            s_whole_bin = c[i] == rem - cum;
            break;
          }
          cum += c[i];
        }
      }
    }
    __syncthreads();
    // Every key of the chosen bin is taken: s_prefix (its lower bits 0) is the smallest key of the bin, so
    // "above it or equal to it" is the set; the remaining passes would only refine a threshold inside it.
    if (s_whole_bin) break;
  }
  // Positions with key == s_prefix to take: the earliest s_remaining (all of them after an early stop).
  take_above_threshold(sc, 0, n, s_prefix, s_whole_bin ? n : s_remaining, 0, 0, out, warp_sums);
}

// ---- split top-k: few queries with long rows. Each row is cut into gridDim.x slices handled by separate
// blocks; per radix pass the slices add their histograms into a global one and one warp per row picks the
// digit; then every slice counts its keys above / equal to the threshold and writes its chosen positions
// at the offset the earlier slices' counts give (ascending, earliest ties first, as topk_kernel).
struct SplitState {
  uint32_t prefix, mask;
  int remaining;
};

__device__ __forceinline__ int split_len(const IndexerArgs& a) { return ((a.L + gridDim.x - 1) / gridDim.x + 7) / 8 * 8; }

__global__ void split_init_kernel(IndexerArgs a, SplitState* st, int* ghist) {
  pdl_prologue();
  const int tc = blockIdx.x;
  for (int i = threadIdx.x; i < 256; i += blockDim.x) ghist[tc * 256 + i] = 0;
  if (threadIdx.x == 0) st[tc] = {0u, 0u, a.topk};
}

__global__ void __launch_bounds__(512) split_hist_kernel(IndexerArgs a, const SplitState* st, int* ghist, int shift) {
  pdl_prologue();
  __shared__ uint32_t hist[256];
  const int tc = blockIdx.y, t = a.t0 + tc, n = a.b.pos_of_token[t] + 1;
  if (n <= a.topk) return;
  const int len = split_len(a), begin = blockIdx.x * len, end = min(n, begin + len);
  if (begin >= end) return;
  for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  const uint32_t prefix = st[tc].prefix, mask = st[tc].mask;
  const float* sc = a.scores + size_t(tc) * a.L;
  for (int base = begin; base < end; base += blockDim.x * kItems) {
    const int j0 = base + threadIdx.x * kItems;
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int j = j0 + i;
      const uint32_t u = j < end ? key_of(sc[j]) : 0u;
      if (j < end && (u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    if (hist[i]) atomicAdd(&ghist[tc * 256 + i], int(hist[i]));
}

__global__ void split_pick_kernel(IndexerArgs a, SplitState* st, int* ghist, int shift) {
  pdl_prologue();
  const int tc = blockIdx.x, t = a.t0 + tc, lane = threadIdx.x;
  if (a.b.pos_of_token[t] + 1 <= a.topk) return;
  int* h = ghist + tc * 256;
  int c[8], tot = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) tot += c[i] = h[255 - 8 * lane - i];
  int incl = tot;
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  const SplitState cur = st[tc];
  int cum = incl - tot;
  if (cum < cur.remaining && cur.remaining <= incl) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (cum + c[i] >= cur.remaining) {
        st[tc] = {cur.prefix | (uint32_t(255 - 8 * lane - i) << shift), cur.mask | (255u << shift), cur.remaining - cum};
        break;
      }
      cum += c[i];
    }
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 8; ++i) h[8 * lane + i] = 0;  // ready for the next pass
}

// Per slice: keys above the threshold, keys equal to it.
__global__ void __launch_bounds__(512) split_count_kernel(IndexerArgs a, const SplitState* st, int* cnt) {
  pdl_prologue();
  __shared__ int warp_sums[32];
  const int tc = blockIdx.y, t = a.t0 + tc, n = a.b.pos_of_token[t] + 1;
  if (n <= a.topk) return;
  const int len = split_len(a), begin = blockIdx.x * len, end = min(n, begin + len);
  const uint32_t thr = st[tc].prefix;
  const float* sc = a.scores + size_t(tc) * a.L;
  int gt = 0, eq = 0;
  for (int j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const uint32_t u = key_of(sc[j]);
    gt += u > thr;
    eq += u == thr;
  }
  int gt_total, eq_total;
  block_exclusive_scan(gt, warp_sums, &gt_total);
  block_exclusive_scan(eq, warp_sums, &eq_total);
  if (threadIdx.x == 0) {
    cnt[(size_t(tc) * gridDim.x + blockIdx.x) * 2] = gt_total;
    cnt[(size_t(tc) * gridDim.x + blockIdx.x) * 2 + 1] = eq_total;
  }
}

__global__ void __launch_bounds__(512) split_write_kernel(IndexerArgs a, const SplitState* st, const int* cnt) {
  pdl_prologue();
  __shared__ int warp_sums[32];
  const int tc = blockIdx.y, t = a.t0 + tc, n = a.b.pos_of_token[t] + 1;
  int32_t* out = a.out + size_t(t) * a.Kout;
  if (n <= a.topk) {
    if (blockIdx.x == 0)
      for (int j = threadIdx.x; j < a.Kout; j += blockDim.x) out[j] = j < n ? j : -1;
    return;
  }
  const int len = split_len(a), begin = blockIdx.x * len, end = min(n, begin + len);
  const uint32_t thr = st[tc].prefix;
  const int ties = st[tc].remaining;
  int out_base = 0, tie_base = 0;  // what the earlier slices take
  for (unsigned k = 0; k < blockIdx.x; ++k) {
    const int g = cnt[(size_t(tc) * gridDim.x + k) * 2], e = cnt[(size_t(tc) * gridDim.x + k) * 2 + 1];
    out_base += g + max(0, min(e, ties - tie_base));
    tie_base += e;
  }
  take_above_threshold(a.scores + size_t(tc) * a.L, begin, end, thr, ties, out_base, tie_base, out, warp_sums);
}
}  // namespace

void launch_indexer_scores(const IndexerArgs& a, cudaStream_t st) {
  if (a.Tc == 0) return;
  const size_t smem = score_smem(a.heads, a.head_dim);
  // Raise the limit only when needed (the call is slow, not per launch), per device: CUDA applies it to
  // the current one. 0 stands for the default 48 KB.
  static std::atomic<size_t> smem_set[64];
  std::atomic<size_t>& set = smem_set[current_device_slot()];
  if (smem > std::max<size_t>(48 * 1024, set.load())) {
    cudaFuncSetAttribute(score_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    set = smem;
  }
  dim3 grid(unsigned((a.L + KT * a.tiles - 1) / (KT * a.tiles)), unsigned(a.Tc));
  launch_k(score_kernel, grid, 256, smem, st, a);
}

void launch_indexer_topk(const IndexerArgs& a, cudaStream_t st) {
  if (a.Tc) launch_k(topk_kernel, unsigned(a.Tc), kTopkThreads, 0, st, a);
}

void launch_indexer_topk_split(const IndexerArgs& a, int slices, void* work, cudaStream_t st) {
  if (a.Tc == 0) return;
  SplitState* state = static_cast<SplitState*>(work);
  int* ghist = reinterpret_cast<int*>(state + a.Tc);
  int* cnt = ghist + a.Tc * 256;
  const dim3 grid(unsigned(slices), unsigned(a.Tc));
  launch_k(split_init_kernel, a.Tc, 256, 0, st, a, state, ghist);
  for (int shift = 24; shift >= 0; shift -= 8) {
    launch_k(split_hist_kernel, grid, 512, 0, st, a, state, ghist, shift);
    launch_k(split_pick_kernel, a.Tc, 32, 0, st, a, state, ghist, shift);
  }
  launch_k(split_count_kernel, grid, 512, 0, st, a, state, cnt);
  launch_k(split_write_kernel, grid, 512, 0, st, a, state, cnt);
}

size_t indexer_topk_split_work_bytes(int Tc, int slices) {
  return size_t(Tc) * (sizeof(SplitState) + 256 * sizeof(int) + 2 * sizeof(int) * size_t(slices));
}

}  // namespace ds::backend::cuda
