// The bookkeeping of the grouped MoE paths, on the device so that no routing comes back to the host:
// per-expert slot lists and work tiles from the routed ids, and the deterministic combine.
//
// Lists: one block of 1024 threads. Counts per expert (shared-memory integer atomics: the totals do not
// depend on their order), exclusive scans for slot and tile offsets, then a stable placement in rounds of
// 1024 pairs: a pair's rank among the pairs of its expert = the pairs of earlier rounds + those of earlier
// warps in this round (per-warp counts, prefix over warps) + those of earlier lanes (__match_any_sync).
// So slots are sorted by expert, then by (t, j): the same lists on every run. With a padded layout (the
// FP8 path's GEMMs read whole tiles of rows) each expert's rows start at a multiple of the tile and its
// last tile's spare rows get token -1, while slots (pair_slot, the GEMM output rows) stay compact.
#include "backend/cuda/kernels.h"
#include "backend/cuda/pdl.cuh"

namespace ds::backend::cuda {

namespace {
constexpr int kListThreads = 1024, kListWarps = kListThreads / 32;

// Exclusive prefix of v over the block's threads (blockDim.x == kListThreads); *total = the sum.
__device__ int block_exclusive_scan(int v, int* s_warp, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) s_warp[warp] = x;
  __syncthreads();
  if (warp == 0) {
    int w = s_warp[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    s_warp[lane] = w;
  }
  __syncthreads();
  const int r = (warp ? s_warp[warp - 1] : 0) + x - v;
  *total = s_warp[kListWarps - 1];
  __syncthreads();  // s_warp is reused by the next scan
  return r;
}

// With shared (the launcher's E + 1 experts, P + T pairs): pairs past the routed ones are the shared
// expert's (expert E - 1, token p - routed).
__global__ void __launch_bounds__(kListThreads)
    moe_lists_kernel(const int32_t* __restrict__ ids, int P, int k, int E, int routed, MoeLists l) {
  pdl_prologue();
  const int routed_experts = P > routed ? E - 1 : E;  // routed ids past them get no slot, as ids >= E did
  auto expert_of = [&](int p) {
    if (p >= routed) return E - 1;
    const int e = ids[p];
    return e < routed_experts ? e : -1;
  };
  auto token_of = [&](int p) { return p < routed ? p / k : p - routed; };
  const int tile_rows = l.tile_rows;
  const bool padded = l.tile_slot0 != nullptr;
  __shared__ int s_count[kMoeMaxExperts];  // pairs per expert, later this round's pairs per expert
  __shared__ int s_next[kMoeMaxExperts];   // pairs of each expert placed so far
  __shared__ int s_off[kMoeMaxExperts];    // first slot of each expert
  __shared__ int s_row[kMoeMaxExperts];    // first row of each expert (= s_off unless padded)
  __shared__ short s_warp_base[kListWarps][kMoeMaxExperts];  // per round: warp counts, then their prefix
  __shared__ int s_scan[kListWarps];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int e = tid; e < E; e += kListThreads) s_count[e] = 0;
  __syncthreads();
  for (int p = tid; p < P; p += kListThreads) {
    const int e = expert_of(p);
    if (e >= 0 && e < E) atomicAdd(&s_count[e], 1);
  }
  __syncthreads();
  // Slot and tile offsets (E <= kMoeMaxExperts <= kListThreads: one expert per thread).
  const int c = tid < E ? s_count[tid] : 0, nt = (c + tile_rows - 1) / tile_rows;
  int slots, tiles;
  const int off = block_exclusive_scan(c, s_scan, &slots);
  const int toff = block_exclusive_scan(nt, s_scan, &tiles);
  const int row = padded ? toff * tile_rows : off;  // the padded rows of earlier experts: their tiles
  if (tid < E) {
    s_next[tid] = 0;
    s_off[tid] = off;
    s_row[tid] = row;
    for (int i = 0; i < nt; ++i) {
      int32_t* tl = l.tiles + 3 * size_t(toff + i);
      tl[0] = tid;
      tl[1] = row + i * tile_rows;
      tl[2] = min(tile_rows, c - i * tile_rows);
      if (padded) l.tile_slot0[toff + i] = off + i * tile_rows;
    }
    if (padded)
      for (int r = c; r < nt * tile_rows; ++r) l.slot_token[row + r] = -1;
  }
  if (tid == 0) *l.n_tiles = tiles;
  for (int i = tid; i < kListWarps * E; i += kListThreads) s_warp_base[i / E][i % E] = 0;
  __syncthreads();
  for (int base = 0; base < P; base += kListThreads) {
    const int p = base + tid;
    const int e = p < P ? expert_of(p) : -1;
    const bool valid = e >= 0 && e < E;
    const unsigned peers = __match_any_sync(0xffffffffu, valid ? e : -1);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    if (valid && rank == 0) s_warp_base[warp][e] = short(__popc(peers));
    __syncthreads();
    for (int x = tid; x < E; x += kListThreads) {
      int run = 0;
#pragma unroll 8
      for (int w = 0; w < kListWarps; ++w) {
        const int n = s_warp_base[w][x];
        s_warp_base[w][x] = short(run);
        run += n;
      }
      s_count[x] = run;
    }
    __syncthreads();
    if (valid) {
      const int r = s_next[e] + s_warp_base[warp][e] + rank;  // rank among the expert's pairs
      l.slot_token[s_row[e] + r] = token_of(p);
      l.pair_slot[p] = s_off[e] + r;
    } else if (p < P) {
      l.pair_slot[p] = -1;
    }
    __syncthreads();
    for (int x = tid; x < E; x += kListThreads) s_next[x] += s_count[x];
    for (int i = tid; i < kListWarps * E; i += kListThreads) s_warp_base[i / E][i % E] = 0;
    __syncthreads();
  }
}

// One token per blockIdx.x, columns over blockIdx.y. Its slots are distinct, so each entry's rank in
// ascending slot order (= expert order) is the number of smaller ones: no serial sort.
constexpr int kCombineChunk = 8;
static_assert(kMoeMaxTopK <= 64, "the smallest block (64 threads): one pair per thread");
__global__ void moe_combine_kernel(const float* __restrict__ out, int H, const int32_t* __restrict__ pair_slot,
                                   const float* __restrict__ w, int k, float* __restrict__ y,
                                   const int32_t* __restrict__ shared_slot) {
  pdl_prologue();
  __shared__ int s_raw[kMoeMaxTopK], s_slot[kMoeMaxTopK];
  __shared__ float s_w[kMoeMaxTopK];
  const int t = blockIdx.x, j = threadIdx.x;
  // The token's slots, weights and shared slot loaded together: one memory latency before the sort.
  const int raw = j < k ? pair_slot[size_t(t) * k + j] : -1;
  const float wj = j < k ? w[size_t(t) * k + j] : 0.f;
  const int ss = shared_slot ? shared_slot[t] : -1;
  if (j < k) s_raw[j] = raw;
  __syncthreads();
  int n = 0;  // valid entries
  for (int i = 0; i < k; ++i) n += s_raw[i] >= 0;
  if (raw >= 0) {
    int rank = 0;
    for (int i = 0; i < k; ++i) rank += s_raw[i] >= 0 && s_raw[i] < raw;
    s_slot[rank] = raw;
    s_w[rank] = wj;
  }
  __syncthreads();
  for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < H; c += gridDim.y * blockDim.x) {
    // The loads first (independent: one memory latency, not n), then the fmaf chain in rank order and the
    // shared expert last, as before: the same result bits.
    const float sh = ss >= 0 ? __ldg(out + size_t(ss) * H + c) : 0.f;
    float acc = 0.f;
    for (int i0 = 0; i0 < n; i0 += kCombineChunk) {
      float v[kCombineChunk];
#pragma unroll
      for (int u = 0; u < kCombineChunk; ++u)
        v[u] = i0 + u < n ? __ldg(out + size_t(s_slot[i0 + u]) * H + c) : 0.f;
#pragma unroll
      for (int u = 0; u < kCombineChunk; ++u)
        if (i0 + u < n) acc = fmaf(s_w[i0 + u], v[u], acc);
    }
    if (ss >= 0) acc += sh;
    y[size_t(t) * H + c] = acc;
  }
}
}  // namespace

int moe_max_tiles(int pairs, int E, int tile_rows) {
  // sum over used experts of ceil(count / R) <= (pairs + used * (R - 1)) / R, used <= min(E, pairs).
  const long long used = pairs < E ? pairs : E;
  return int((pairs + used * (tile_rows - 1)) / tile_rows);
}

void launch_moe_build_lists(const int32_t* ids, int T, int k, int E, const MoeLists& l, cudaStream_t st,
                            bool shared) {
  if (T == 0) return;
  const int routed = T * k;
  if (shared) launch_k(moe_lists_kernel, 1, kListThreads, 0, st, ids, routed + T, k, E + 1, routed, l);
  else launch_k(moe_lists_kernel, 1, kListThreads, 0, st, ids, routed, k, E, routed, l);
}

void launch_moe_combine(const float* out, int H, const int32_t* pair_slot, const float* w, int T, int k, float* y,
                        int num_sms, cudaStream_t st, const int32_t* shared_slot) {
  if (T == 0 || H == 0) return;
  // Large T: 256 threads x up to 4 columns. Below about one block per SM (a decode step: T = 1 and
  // H = 7168 gave 7 blocks), first fewer columns per thread, then smaller blocks (>= 64 threads, >= k).
  int threads = 256, cols = 4;
  auto blocks = [&] { return int64_t(T) * ((H + threads * cols - 1) / (threads * cols)); };
  while (cols > 1 && blocks() < num_sms) cols /= 2;
  while (threads > 64 && blocks() < num_sms) threads /= 2;
  const int col_blocks = (H + threads * cols - 1) / (threads * cols);
  launch_k(moe_combine_kernel, dim3(unsigned(T), unsigned(col_blocks)), threads, 0, st, out, H, pair_slot, w, k, y,
           shared_slot);
}

__global__ void moe_local_ids_kernel(int32_t* ids, int64_t n, int32_t first, int32_t count) {
  pdl_prologue();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) ids[i] = ids[i] >= first && ids[i] < first + count ? ids[i] - first : -1;
}

void launch_moe_local_ids(int32_t* ids, int64_t n, int32_t first, int32_t count, cudaStream_t st) {
  if (n == 0) return;
  launch_k(moe_local_ids_kernel, unsigned((n + 255) / 256), 256, 0, st, ids, n, first, count);
}

}  // namespace ds::backend::cuda
