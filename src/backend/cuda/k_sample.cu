// Next-token sampling next to the logits: one block per batch row, greedy and sampled rows in the same
// launch. Semantics of runtime/sampler.cpp: penalties (applied to the logits in place) -> temperature ->
// top-k -> top-p -> min-p -> draw; logprobs from the penalised, tempered log-softmax before filtering.
//
// The kept set is always a prefix of the row in "most likely first, lowest id first" order (top-k,
// top-p and min-p each keep a prefix), so it is found without sorting the vocabulary:
//  - one pass computes the softmax sum, the row's probability mass, and a histogram of the distance
//    d = (max - x) / T (in bits: p = 2^-d) over 2048 bins that follow that order (fine where the mass is);
//  - the bin where the running count (top-k) or mass (top-p) reaches its target is sorted alone in
//    shared memory (rows where it holds more than kCap elements, e.g. masses of equal logits, fall
//    back to a bisection over the 32-bit keys: slower, same result);
//  - the draw walks the kept set in id order with block scans.
// Masses are fixed-point integers (p * 2^shift, p = exp(-d) in (0, 1]): sums are exact, so the result
// does not depend on the order of any reduction or atomic, and one (seed, position) always gives the
// same token. The random number is Philox4x32-10 keyed on the request's seed, counter = output position.
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/per_device.h"

namespace ds::backend::cuda {

namespace {
using u64 = unsigned long long;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 2048;  // d < 32 bits: 1/32 bit wide (bins 0..1023); d < 288: 1/4 wide; beyond: "the rest"
constexpr int kCap = 4096;   // elements of one bin sorted in shared memory
constexpr unsigned kFull = 0xffffffffu;
static_assert(kBins % kThreads == 0, "bins are split evenly over the threads");
constexpr int kBinsPerThread = kBins / kThreads;

struct Shared {
  uint32_t bin_count[kBins];
  u64 bin_mass[kBins];
  u64 list[kCap];  // sort keys (~ordered key << 32 | id): ascending = most likely first, then lowest id
  u64 red[kWarps];
  double red_f64[kWarps];
  float red_v[kWarps];
  int red_i[kWarps];
  int found_bin, found_index, n_list;
  u64 above_count, above_mass;
};

// Order-preserving map of a (non-NaN) float to an unsigned key, and back.
__device__ __forceinline__ uint32_t okey(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float from_okey(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ u64 sort_key(float v, int i) { return (u64(~okey(v)) << 32) | uint32_t(i); }
__device__ __forceinline__ uint32_t key_of(u64 s) { return ~uint32_t(s >> 32); }

__device__ __forceinline__ int bin_of(float d) {  // d >= 0 (the clamp only guards the shared histogram)
  if (d < 32.f) return max(0, int(d * 32.f));
  if (d < 288.f) return 1024 + int((d - 32.f) * 4.f);
  return kBins;
}

// One row and what every pass needs to know about it.
struct Row {
  const float* x;
  int V;
  float xmax;
  float k2;     // log2(e) / T: dist(v) = (max - v) / T in bits, p = 2^-dist (one multiply, one exp2)
  float scale;  // 2^shift with V * 2^shift < 2^63: integer sums of masses cannot overflow
  __device__ float dist(float v) const { return (xmax - v) * k2; }
  __device__ u64 mass_of_p(float p) const { return __float2ull_rn(p * scale); }
  __device__ u64 mass(float v) const { return mass_of_p(exp2f(-dist(v))); }
  // log-softmax of the tempered logits (nats), given log(sum of p).
  __device__ float logprob(float v, double log_sum) const {
    return float(-double(dist(v)) * 0.69314718055994531 - log_sum);
  }
};

// ---------------------------------------------------------------- block primitives (fixed order)

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }
__device__ __forceinline__ int warp_id() { return threadIdx.x >> 5; }

__device__ u64 block_sum(u64 v, Shared& sm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (lane_id() == 0) sm.red[warp_id()] = v;
  __syncthreads();
  u64 s = 0;
  for (int w = 0; w < kWarps; ++w) s += sm.red[w];
  __syncthreads();
  return s;
}

__device__ double block_sum_f64(double v, Shared& sm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (lane_id() == 0) sm.red_f64[warp_id()] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < kWarps; ++w) s += sm.red_f64[w];
  __syncthreads();
  return s;
}

__device__ uint32_t block_min(uint32_t v, Shared& sm) {
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(kFull, v, o));
  if (lane_id() == 0) sm.red[warp_id()] = v;
  __syncthreads();
  uint32_t m = 0xffffffffu;
  for (int w = 0; w < kWarps; ++w) m = min(m, uint32_t(sm.red[w]));
  __syncthreads();
  return m;
}

// Exclusive prefix sum over the threads in thread order; *total = the sum of all.
__device__ u64 block_exclusive_scan(u64 v, Shared& sm, u64* total) {
  u64 inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const u64 n = __shfl_up_sync(kFull, inc, o);
    if (lane_id() >= o) inc += n;
  }
  if (lane_id() == 31) sm.red[warp_id()] = inc;
  __syncthreads();
  u64 before = 0, all = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp_id()) before += sm.red[w];
    all += sm.red[w];
  }
  __syncthreads();
  *total = all;
  return before + inc - v;
}

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// ---------------------------------------------------------------- row passes

// Every element, thread t taking t, t + kThreads, ... (coalesced; not in id order across threads).
template <typename F>
__device__ __forceinline__ void for_each(const Row& r, F&& f) {
  if ((r.V & 3) == 0 && (reinterpret_cast<uintptr_t>(r.x) & 15) == 0) {
    const float4* x4 = reinterpret_cast<const float4*>(r.x);
    for (int q = threadIdx.x; q < r.V / 4; q += kThreads) {
      const float4 v = x4[q];
      f(4 * q, v.x);
      f(4 * q + 1, v.y);
      f(4 * q + 2, v.z);
      f(4 * q + 3, v.w);
    }
  } else {
    for (int i = threadIdx.x; i < r.V; i += kThreads) f(i, r.x[i]);
  }
}

// Thread t's contiguous ids [begin, end): scans over the threads then follow the id order.
__device__ __forceinline__ void chunk_of(int V, int& begin, int& end) {
  const int c = (V + kThreads - 1) / kThreads;
  begin = min(V, int(threadIdx.x) * c);
  end = min(V, begin + c);
}

struct Stats {
  double log_sum = 0;    // log(sum of exp(-d))
  u64 mass = 0;          // of the whole row
  u64 minp_count = 0;    // elements with p >= min_p, their mass and their smallest key
  u64 minp_mass = 0;
  uint32_t minp_key = 0;
};

// Softmax sum, masses, the min-p set, and (with_hist) the histogram of d.
__device__ Stats row_stats(const Row& r, Shared& sm, float min_p, bool with_hist) {
  if (with_hist) {
    for (int b = threadIdx.x; b < kBins; b += kThreads) sm.bin_count[b] = 0, sm.bin_mass[b] = 0;
    __syncthreads();
  }
  double sum = 0;
  u64 mass = 0, mp_mass = 0, mp_count = 0;
  uint32_t mp_key = 0xffffffffu;
  for_each(r, [&](int, float v) {
    const float d = r.dist(v), p = exp2f(-d);
    const u64 q = r.mass_of_p(p);
    sum += p;
    mass += q;
    if (p >= min_p) {
      mp_mass += q;
      ++mp_count;
      mp_key = min(mp_key, okey(v));
    }
    if (with_hist) {
      const int b = bin_of(d);
      if (b < kBins) {
        atomicAdd(&sm.bin_count[b], 1u);
        if (q) atomicAdd(&sm.bin_mass[b], q);
      }
    }
  });
  Stats st;
  st.log_sum = log(block_sum_f64(sum, sm));
  st.mass = block_sum(mass, sm);
  st.minp_mass = block_sum(mp_mass, sm);
  st.minp_count = block_sum(mp_count, sm);
  st.minp_key = block_min(mp_key, sm);
  return st;
}

// Where, in sorted order, the running count (by_mass: mass) first reaches a target: the key of that
// element, the count and mass of the elements with larger keys, and how many have that key.
struct Cut {
  uint32_t key = 0;
  u64 above = 0, above_mass = 0, ties = 0;
};

// Count and mass of the elements with key >= k (k <= 2^32).
__device__ void at_least(const Row& r, Shared& sm, u64 k, u64& count, u64& mass) {
  u64 c = 0, m = 0;
  for_each(r, [&](int, float v) {
    if (okey(v) >= k) ++c, m += r.mass(v);
  });
  count = block_sum(c, sm);
  mass = block_sum(m, sm);
}

// The slow exact path: bisection over the keys, one pass per bit.
__device__ Cut cut_by_bisection(const Row& r, Shared& sm, bool by_mass, u64 target) {
  u64 lo = 0, hi = u64(1) << 32;  // reached at lo, not at hi
  while (hi - lo > 1) {
    const u64 mid = (lo + hi) / 2;
    u64 c, m;
    at_least(r, sm, mid, c, m);
    if ((by_mass ? m : c) >= target) lo = mid;
    else hi = mid;
  }
  u64 c0, m0, c1, m1;
  at_least(r, sm, lo, c0, m0);
  at_least(r, sm, lo + 1, c1, m1);
  Cut cut;
  cut.key = uint32_t(lo);
  cut.above = c1;
  cut.above_mass = m1;
  cut.ties = c0 - c1;
  return cut;
}

// The elements of histogram bin `bin` into sm.list (unordered; warp-aggregated slots).
__device__ int collect_bin(const Row& r, Shared& sm, int bin) {
  if (threadIdx.x == 0) sm.n_list = 0;
  __syncthreads();
  for (int base = 0; base < r.V; base += kThreads) {  // the same trip count in every lane: ballots are safe
    const int i = base + threadIdx.x;
    float v = 0.f;
    bool take = false;
    if (i < r.V) {
      v = r.x[i];
      take = bin_of(r.dist(v)) == bin;
    }
    const unsigned mask = __ballot_sync(kFull, take);
    if (!mask) continue;
    int slot = 0;
    if (lane_id() == 0) slot = atomicAdd(&sm.n_list, __popc(mask));
    slot = __shfl_sync(kFull, slot, 0) + __popc(mask & ((1u << lane_id()) - 1));
    if (take && slot < kCap) sm.list[slot] = sort_key(v, i);
  }
  __syncthreads();
  return min(sm.n_list, kCap);
}

// Bitonic sort of sm.list[0, n) ascending (padded to a power of two).
__device__ void sort_list(Shared& sm, int n) {
  int P = 1;
  while (P < n) P <<= 1;
  for (int i = n + threadIdx.x; i < P; i += kThreads) sm.list[i] = ~u64(0);
  __syncthreads();
  for (int k = 2; k <= P; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < P; i += kThreads) {
        const int o = i ^ j;
        if (o > i) {
          const u64 a = sm.list[i], b = sm.list[o];
          if ((a > b) == ((i & k) == 0)) sm.list[i] = b, sm.list[o] = a;
        }
      }
      __syncthreads();
    }
}

// First index of the sorted list at which the running mass reaches t (1 <= t <= the list's mass).
__device__ int mass_crossing(const Row& r, Shared& sm, int n, u64 t) {
  const int per = (n + kThreads - 1) / kThreads, b = min(n, int(threadIdx.x) * per), e = min(n, b + per);
  u64 own = 0;
  for (int i = b; i < e; ++i) own += r.mass(from_okey(key_of(sm.list[i])));
  if (threadIdx.x == 0) sm.found_index = 0;
  u64 total;
  const u64 before = block_exclusive_scan(own, sm, &total);
  if (before < t && t <= before + own) {
    u64 acc = before;
    for (int i = b; i < e; ++i) {
      acc += r.mass(from_okey(key_of(sm.list[i])));
      if (acc >= t) {
        sm.found_index = i;
        break;
      }
    }
  }
  __syncthreads();
  return sm.found_index;
}

// target: 1 <= target <= V (by count) or <= the row's mass (by mass). Needs row_stats' histogram.
__device__ Cut find_cut(const Row& r, Shared& sm, const Stats& st, bool by_mass, u64 target) {
  const int tid = threadIdx.x;
  // 1. The bin where the target is reached: bins follow the sorted order.
  u64 c = 0, m = 0;
  for (int q = 0; q < kBinsPerThread; ++q) c += sm.bin_count[tid * kBinsPerThread + q], m += sm.bin_mass[tid * kBinsPerThread + q];
  if (tid == 0) sm.found_bin = -1;
  u64 c_all, m_all;
  const u64 c_before = block_exclusive_scan(c, sm, &c_all);
  const u64 m_before = block_exclusive_scan(m, sm, &m_all);
  const u64 before = by_mass ? m_before : c_before, own = by_mass ? m : c;
  if (before < target && target <= before + own) {
    u64 ac = c_before, am = m_before;
    for (int q = 0; q < kBinsPerThread; ++q) {
      const int b = tid * kBinsPerThread + q;
      if (target <= (by_mass ? am + sm.bin_mass[b] : ac + sm.bin_count[b])) {
        sm.found_bin = b, sm.above_count = ac, sm.above_mass = am;
        break;
      }
      ac += sm.bin_count[b], am += sm.bin_mass[b];
    }
  }
  __syncthreads();
  int bin = sm.found_bin;
  u64 above = sm.above_count, above_mass = sm.above_mass;
  if (bin < 0) bin = kBins, above = c_all, above_mass = m_all;  // in the rest beyond the last bin
  const u64 n = bin < kBins ? sm.bin_count[bin] : u64(r.V) - c_all;
  if (n > u64(kCap)) return cut_by_bisection(r, sm, by_mass, target);
  __syncthreads();  // everyone has read found_bin before collect_bin reuses the shared state
  // 2. That bin's elements, sorted; the crossing inside it.
  const int len = collect_bin(r, sm, bin);
  sort_list(sm, len);
  const int j = by_mass ? mass_crossing(r, sm, len, target - above_mass) : int(target - above - 1);
  const uint32_t key = key_of(sm.list[j]);
  // 3. Larger and equal keys inside the bin (equal keys share the bin; larger ones are in it or above).
  u64 gt = 0, gm = 0, eq = 0;
  for (int i = tid; i < len; i += kThreads) {
    const uint32_t k = key_of(sm.list[i]);
    if (k > key) ++gt, gm += r.mass(from_okey(k));
    else if (k == key) ++eq;
  }
  Cut cut;
  cut.key = key;
  cut.above = above + block_sum(gt, sm);
  cut.above_mass = above_mass + block_sum(gm, sm);
  cut.ties = block_sum(eq, sm);
  return cut;
}

// The kept set is the keys above `key` plus the first `ties` ids with key `key`. Returns the element at
// which the running mass over it, in id order, passes u (u < the kept mass).
__device__ int draw_in_id_order(const Row& r, Shared& sm, uint32_t key, u64 ties, u64 u) {
  int b, e;
  chunk_of(r.V, b, e);
  u64 n_eq = 0, m_gt = 0;
  for (int i = b; i < e; ++i) {
    const uint32_t k = okey(r.x[i]);
    if (k > key) m_gt += r.mass(r.x[i]);
    else if (k == key) ++n_eq;
  }
  if (threadIdx.x == 0) sm.found_index = -1;
  u64 all;
  const u64 eq_before = block_exclusive_scan(n_eq, sm, &all);
  const u64 take = ties > eq_before ? min(n_eq, ties - eq_before) : 0;
  const u64 m_key = r.mass(from_okey(key));
  const u64 own = m_gt + take * m_key;
  const u64 before = block_exclusive_scan(own, sm, &all);
  if (before <= u && u < before + own) {
    u64 acc = before, left = take;
    for (int i = b; i < e; ++i) {
      const float v = r.x[i];
      const uint32_t k = okey(v);
      u64 q = 0;
      if (k > key) q = r.mass(v);
      else if (k == key && left) --left, q = m_key;
      if (u < acc + q) {
        sm.found_index = i;
        break;
      }
      acc += q;
    }
  }
  __syncthreads();
  return sm.found_index;
}

// Philox4x32-10 (Salmon et al., SC'11): 64 random bits of (seed, position).
__device__ u64 philox_u64(u64 seed, u64 position) {
  uint4 c = make_uint4(uint32_t(position), uint32_t(position >> 32), 0x53414d50u /* "SAMP" */, 0u);
  uint2 k = make_uint2(uint32_t(seed), uint32_t(seed >> 32));
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
    c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    k.x += 0x9E3779B9u;
    k.y += 0xBB67AE85u;
  }
  return (u64(c.x) << 32) | c.y;
}

// top-k -> top-p -> min-p on the sorted order (each keeps a prefix of it), then the draw.
__device__ int draw_token(const Row& r, Shared& sm, const Stats& st, const DevSampleRow& p) {
  const u64 V = u64(r.V);
  const bool k_on = p.top_k > 0 && u64(p.top_k) < V, p_on = p.top_p < 1.f, m_on = p.min_p > 0.f;
  const u64 k_n = k_on ? u64(p.top_k) : V;
  u64 k_mass = st.mass;
  Cut ck, cp;
  if (k_on) {
    ck = find_cut(r, sm, st, false, k_n);
    k_mass = ck.above_mass + (k_n - ck.above) * r.mass(from_okey(ck.key));
  }
  u64 p_n = V;
  if (p_on) {  // the smallest prefix whose mass reaches top_p of the top-k mass
    const double t = ceil(double(p.top_p) * double(k_mass));
    const u64 target = t < 1.0 ? 1 : (t >= double(k_mass) ? k_mass : min(k_mass, u64(t)));
    cp = find_cut(r, sm, st, true, target);
    const u64 mk = r.mass(from_okey(cp.key));  // > 0: reaching the target takes mass
    p_n = cp.above + (target - cp.above_mass + mk - 1) / mk;
  }
  const u64 m_n = m_on ? st.minp_count : V;
  const u64 n = min(k_n, min(p_n, m_n));
  uint32_t key = 0;  // below every key: all kept
  u64 ties = ~u64(0), kept = st.mass;
  if (m_on && n == m_n) {
    key = st.minp_key, kept = st.minp_mass;
  } else if (p_on && n == p_n) {
    key = cp.key, ties = p_n - cp.above, kept = cp.above_mass + ties * r.mass(from_okey(cp.key));
  } else if (k_on && n == k_n) {
    key = ck.key, ties = k_n - ck.above, kept = k_mass;
  }
  const u64 u = __umul64hi(philox_u64(p.seed, p.position), kept);  // uniform in [0, kept)
  return draw_in_id_order(r, sm, key, ties, u);
}

// The n most likely (then lowest ids) with their logprobs, most likely first.
__device__ void top_logprobs(const Row& r, Shared& sm, const Stats& st, int n, int32_t* ids, float* lps) {
  const Cut c = find_cut(r, sm, st, false, u64(n));
  const u64 ties = u64(n) - c.above;
  int b, e;
  chunk_of(r.V, b, e);
  u64 n_eq = 0;
  for (int i = b; i < e; ++i) n_eq += okey(r.x[i]) == c.key;
  if (threadIdx.x == 0) sm.n_list = 0;
  u64 all;
  u64 eq_seen = block_exclusive_scan(n_eq, sm, &all);
  for (int i = b; i < e; ++i) {
    const float v = r.x[i];
    const uint32_t k = okey(v);
    const bool take = k > c.key || (k == c.key && eq_seen++ < ties);
    if (take) sm.list[atomicAdd(&sm.n_list, 1)] = sort_key(v, i);
  }
  __syncthreads();
  if (int(threadIdx.x) < n) {  // rank by counting (n <= kSampleMaxTopLogprobs)
    const u64 me = sm.list[threadIdx.x];
    int rank = 0;
    for (int j = 0; j < n; ++j) rank += sm.list[j] < me;
    ids[rank] = int32_t(uint32_t(me));
    lps[rank] = r.logprob(from_okey(key_of(me)), st.log_sum);
  }
}

__device__ float mass_scale(int V) {
  int bits = 0;
  while ((u64(1) << bits) < u64(V)) ++bits;
  return ldexpf(1.f, 62 - bits);
}

__global__ void __launch_bounds__(kThreads, 2) sample_kernel(SampleArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Shared& sm = *reinterpret_cast<Shared*>(smem_raw);
  const int row = blockIdx.x, tid = threadIdx.x, V = a.vocab;
  const DevSampleRow p = a.row[row];
  float* x = a.logits + p.logits_row * (long long)V;

  // Penalties, in place (distinct ids per row; the same float operations as the host sampler).
  for (int e = tid; e < p.penalty_count; e += kThreads) {
    const int id = a.penalty_ids[p.penalty_begin + e], n = a.penalty_counts[p.penalty_begin + e];
    float v = x[id];
    if (p.repetition_penalty != 1.f)
      v = v > 0.f ? __fdiv_rn(v, p.repetition_penalty) : __fmul_rn(v, p.repetition_penalty);
    if (n > 0) v = __fsub_rn(v, __fadd_rn(__fmul_rn(float(n), p.frequency_penalty), p.presence_penalty));
    x[id] = v;
  }
  __syncthreads();
  // A token mask (structured outputs): a masked token's logit becomes -inf, in place, after the
  // penalties (the sync above: a penalty and the mask may touch the same logit) and before the max.
  if (p.mask_begin >= 0) {
    const uint32_t* m = a.masks + p.mask_begin;
    for (int i = tid; i < V; i += kThreads)
      if (!((m[i >> 5] >> (i & 31)) & 1u)) x[i] = -INFINITY;
    __syncthreads();
  }

  Row r{x, V, 0.f, 1.f, mass_scale(V)};
  // Max and argmax (lowest id among equal maxima); a NaN or +inf anywhere fails the row.
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  bool bad = false;
  for_each(r, [&](int i, float v) {
    if (!(v < INFINITY)) bad = true;
    else if (better(v, i, best, best_i)) best = v, best_i = i;
  });
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, best, o);
    const int oi = __shfl_xor_sync(kFull, best_i, o);
    if (better(ov, oi, best, best_i)) best = ov, best_i = oi;
  }
  if (lane_id() == 0) sm.red_v[warp_id()] = best, sm.red_i[warp_id()] = best_i;
  bad = __syncthreads_or(bad);
  best = sm.red_v[0], best_i = sm.red_i[0];
  for (int w = 1; w < kWarps; ++w)
    if (better(sm.red_v[w], sm.red_i[w], best, best_i)) best = sm.red_v[w], best_i = sm.red_i[w];
  if (bad || !(best > -INFINITY)) {
    if (tid == 0) a.token[row] = -1, a.logprob[row] = 0.f;
    return;
  }
  const bool greedy = p.temperature == 0.f;
  r.xmax = best;
  r.k2 = float(1.4426950408889634 / (greedy ? 1.0 : double(p.temperature)));
  const int n_top = p.logprobs ? min(p.top_logprobs, V) : 0;
  const bool filtered = !greedy && ((p.top_k > 0 && p.top_k < V) || p.top_p < 1.f);

  Stats st;
  if (!greedy || p.logprobs) st = row_stats(r, sm, greedy ? 0.f : p.min_p, filtered || n_top > 0);
  const int token = greedy ? best_i : draw_token(r, sm, st, p);
  if (tid == 0) {
    a.token[row] = token;
    a.logprob[row] = p.logprobs ? r.logprob(x[token], st.log_sum) : 0.f;
  }
  if (n_top > 0)
    top_logprobs(r, sm, st, n_top, a.top_ids + size_t(row) * a.top_pitch, a.top_logprobs + size_t(row) * a.top_pitch);
}
// Greedy token of each row (a draft chain's next input, left on the device): lowest id among equal
// maxima; a NaN or +inf anywhere (or a row of -inf) gives 0. One block of kThreads per row, float4 loads.
__global__ void __launch_bounds__(kThreads) argmax_rows_kernel(const float* logits, int V, int* ids) {
  __shared__ float red_v[kWarps];
  __shared__ int red_i[kWarps];
  const float* x = logits + size_t(blockIdx.x) * V;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  bool bad = false;
  auto see = [&](int i, float v) {
    if (!(v < INFINITY)) bad = true;
    else if (better(v, i, best, best_i)) best = v, best_i = i;
  };
  const bool vec = (V % 4) == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (int j = threadIdx.x; j < V / 4; j += kThreads) {
      const float4 v = x4[j];
      see(4 * j, v.x), see(4 * j + 1, v.y), see(4 * j + 2, v.z), see(4 * j + 3, v.w);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += kThreads) see(i, x[i]);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, best, o);
    const int oi = __shfl_xor_sync(kFull, best_i, o);
    if (better(ov, oi, best, best_i)) best = ov, best_i = oi;
  }
  if (lane_id() == 0) red_v[warp_id()] = best, red_i[warp_id()] = best_i;
  bad = __syncthreads_or(bad);
  if (threadIdx.x != 0) return;
  best = red_v[0], best_i = red_i[0];
  for (int w = 1; w < kWarps; ++w)
    if (better(red_v[w], red_i[w], best, best_i)) best = red_v[w], best_i = red_i[w];
  ids[blockIdx.x] = bad || !(best > -INFINITY) ? 0 : best_i;
}
}  // namespace

void launch_argmax_rows(const float* logits, int R, int V, int* ids, cudaStream_t st) {
  if (R > 0) argmax_rows_kernel<<<R, kThreads, 0, st>>>(logits, V, ids);
}

void launch_sample(const SampleArgs& a, cudaStream_t st) {
  if (a.rows == 0) return;
  // > 48 KB of shared memory must be asked for (once per device); an error surfaces at the launch check.
  static std::atomic<uint64_t> attr_set{0};
  once_per_device(attr_set, [] {
    cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sizeof(Shared)));
  });
  sample_kernel<<<a.rows, kThreads, sizeof(Shared), st>>>(a);
}

}  // namespace ds::backend::cuda
