// One-shot all-reduce over peer memory (TensorRT-LLM's and SGLang's "custom all-reduce") for the small
// messages of decode steps, where NCCL's ~10-20 us latency per call dominates. Each block b: copy this
// rank's part b of the message into its own staging buffer, tell every peer (a flag in the peer's memory),
// wait for every peer's flag, then sum part b of all ranks' staging buffers, in rank order, into the
// tensor. Every rank adds the same values in the same order, so every rank gets the same bits.
//
// Why two staging halves ("parities", epoch e uses half e & 1) are enough: rank r writes half p of part b
// again only in its run e + 2 of block b. Before that it passed the barrier of its run e + 1, which needs
// every peer's flag e + 1 for block b, set by the peer's run e + 1 of block b: a later kernel on the
// peer's stream than its run e, which (plain stream order, no programmatic dependent launch) had finished,
// so the peer is done reading r's half p. A block's part is fixed whatever the dtype and size, so "run e of
// block b" means the same bytes on every rank (every rank calls with the same shapes: Group's contract).
// For the same reason a flag may already hold e + 1 when its reader looks for e (the peer finished run e
// and started e + 1), never e + 2: the wait compares wrap-safely (>=), not with ==.
#include <cuda_bf16.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/peer_all_reduce_kernel.h"

namespace ds::backend::cuda {

namespace {

__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ uint32_t load_relaxed_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_relaxed_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// Nanoseconds (not clock64's cycles: independent of the SM clock).
__device__ __forceinline__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Spins until `flag` (this rank's slot for `peer`) reaches epoch e. False when the group was aborted or the
// peer did not come within the timeout; the timeout also records the peer and aborts every rank's waits.
__device__ bool wait_for_peer(const uint32_t* flag, uint32_t e, const PeerArgs& a, int peer) {
  const unsigned long long start = now_ns();
  for (uint32_t i = 1;; ++i) {
    if (int32_t(load_acquire_sys(flag) - e) >= 0) return true;
    if (i % 256 == 0) {  // the abort word is host memory (a PCIe read): not on every poll
      if (load_relaxed_sys(a.abort)) return false;
      if (now_ns() - start > a.timeout_ns) {
        store_relaxed_sys(a.error, uint32_t(peer + 1));
        store_relaxed_sys(a.abort, 1u);
        return false;
      }
    }
  }
}

// 16 bytes at p: one vector access when aligned, else eight 2-byte ones (tensors are 2-byte aligned).
__device__ __forceinline__ uint4 load16(const char* p, bool aligned) {
  if (aligned) return *reinterpret_cast<const uint4*>(p);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return make_uint4(h[0] | uint32_t(h[1]) << 16, h[2] | uint32_t(h[3]) << 16, h[4] | uint32_t(h[5]) << 16,
                    h[6] | uint32_t(h[7]) << 16);
}
__device__ __forceinline__ void store16(char* p, uint4 v, bool aligned) {
  if (aligned) {
    *reinterpret_cast<uint4*>(p) = v;
    return;
  }
  uint16_t* h = reinterpret_cast<uint16_t*>(p);
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    h[2 * k] = uint16_t(w[k]);
    h[2 * k + 1] = uint16_t(w[k] >> 16);
  }
}

template <bool kBf16>
struct Elem {
  static constexpr int kBytes = kBf16 ? 2 : 4;
  static constexpr int kPerVec = 16 / kBytes;
  __device__ static void unpack(uint4 v, float (&x)[kPerVec]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if constexpr (kBf16) {
        x[2 * k] = __uint_as_float(w[k] << 16);
        x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
      } else {
        x[k] = __uint_as_float(w[k]);
      }
    }
  }
  __device__ static uint4 pack(const float (&x)[kPerVec]) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if constexpr (kBf16)
        w[k] = uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(x[2 * k]))) |
               uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(x[2 * k + 1]))) << 16;
      else
        w[k] = __float_as_uint(x[k]);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
  __device__ static float load(const char* p) {
    if constexpr (kBf16) return __uint_as_float(uint32_t(__ldcg(reinterpret_cast<const unsigned short*>(p))) << 16);
    else return __ldcg(reinterpret_cast<const float*>(p));
  }
  __device__ static void store(char* p, float v) {
    if constexpr (kBf16) *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
    else *reinterpret_cast<float*>(p) = v;
  }
};

// Two blocks of kPeerThreads per SM (<= 64 registers): the one-GPU checks run up to 8 ranks x 32 blocks
// spinning at once, which must all be resident (256 <= 2 x 132 SMs) or the waits never end.
template <bool kBf16>
__global__ void __launch_bounds__(kPeerThreads, 2)
    one_shot_all_reduce_kernel(char* data, size_t bytes, bool aligned, PeerArgs a) {
  using E = Elem<kBf16>;
  __shared__ uint32_t s_epoch;
  const int b = blockIdx.x, t = threadIdx.x;
  const size_t begin = size_t(b) * kPeerChunkBytes;
  const uint32_t len = uint32_t(bytes - begin < kPeerChunkBytes ? bytes - begin : kPeerChunkBytes);
  const uint32_t nvec = len / 16;
  if (t == 0) {
    s_epoch = a.epochs[b] + 1;
    a.epochs[b] = s_epoch;
  }
  __syncthreads();
  const uint32_t e = s_epoch;
  const size_t off = size_t(e & 1) * kPeerMaxBytes + begin;
  char* io = data + begin;
  char* mine = static_cast<char*>(a.data[a.rank]) + off;
  for (uint32_t u = t; u < nvec; u += kPeerThreads)
    *reinterpret_cast<uint4*>(mine + 16 * u) = load16(io + 16 * u, aligned);
  for (uint32_t h = nvec * 8 + t; h < len / 2; h += kPeerThreads)  // the tail: < 16 bytes, in 2-byte halves
    reinterpret_cast<uint16_t*>(mine)[h] = reinterpret_cast<const uint16_t*>(io)[h];
  __syncthreads();  // the block's copy before the flags (each release below covers it)
  bool lost = false;
  if (t < a.ranks && t != a.rank) {
    store_release_sys(a.flags[t] + b * kPeerMaxRanks + a.rank, e);
    lost = !wait_for_peer(a.flags[a.rank] + b * kPeerMaxRanks + t, e, a, t);
  }
  if (__syncthreads_or(lost)) return;  // aborted: the tensor is left as it is

  // L2 loads (__ldcg): the staging halves are rewritten by other kernels and other GPUs.
  for (uint32_t u = t; u < nvec; u += kPeerThreads) {
    float acc[E::kPerVec], x[E::kPerVec];
    E::unpack(__ldcg(reinterpret_cast<const uint4*>(static_cast<const char*>(a.data[0]) + off) + u), acc);
#pragma unroll
    for (int r = 1; r < kPeerMaxRanks; ++r) {
      if (r >= a.ranks) break;
      E::unpack(__ldcg(reinterpret_cast<const uint4*>(static_cast<const char*>(a.data[r]) + off) + u), x);
#pragma unroll
      for (int k = 0; k < E::kPerVec; ++k) acc[k] += x[k];
    }
    store16(io + 16 * u, E::pack(acc), aligned);
  }
  for (uint32_t i = nvec * 16 / E::kBytes + t; i < len / E::kBytes; i += kPeerThreads) {
    float s = E::load(static_cast<const char*>(a.data[0]) + off + size_t(i) * E::kBytes);
    for (int r = 1; r < a.ranks; ++r) s += E::load(static_cast<const char*>(a.data[r]) + off + size_t(i) * E::kBytes);
    E::store(io + size_t(i) * E::kBytes, s);
  }
}

}  // namespace

void preload_one_shot_all_reduce() {
  cudaFuncAttributes attr;
  DS_CUDA_CHECK(cudaFuncGetAttributes(&attr, one_shot_all_reduce_kernel<true>));
  DS_CUDA_CHECK(cudaFuncGetAttributes(&attr, one_shot_all_reduce_kernel<false>));
}

void launch_one_shot_all_reduce(void* data, size_t bytes, bool bf16, const PeerArgs& a, cudaStream_t st) {
  if (bytes == 0) return;
  const unsigned grid = unsigned((bytes + kPeerChunkBytes - 1) / kPeerChunkBytes);
  const bool aligned = reinterpret_cast<uintptr_t>(data) % 16 == 0;
  char* p = static_cast<char*>(data);
  if (bf16) one_shot_all_reduce_kernel<true><<<grid, kPeerThreads, 0, st>>>(p, bytes, aligned, a);
  else one_shot_all_reduce_kernel<false><<<grid, kPeerThreads, 0, st>>>(p, bytes, aligned, a);
}

}  // namespace ds::backend::cuda
