// Intra-block synchronisation for warp-specialised Hopper kernels: shared-memory mbarriers (phases with
// parity waits; cp.async and bulk-copy completion can arrive on them), named barriers between warpgroups,
// and the bulk copy engine's 1-D global -> shared copy that completes on an mbarrier.
#pragma once
#include <cstdint>

namespace ds::backend::cuda {

// An mbarrier (8 bytes of shared memory, 8-byte aligned) expecting `count` arrivals per phase.
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// One arrival (release: this thread's earlier shared-memory writes are visible to whoever waits).
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile(
      "{\n"
      ".reg .b64 st;\n"
      "mbarrier.arrive.shared::cta.b64 st, [%0];\n"
      "}\n" ::"r"(bar)
      : "memory");
}
// One arrival made when every cp.async this thread issued so far has landed (counted in the init count:
// .noinc). The copied bytes are visible to threads that then see the phase complete.
__device__ __forceinline__ void mbar_arrive_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// One arrival that also expects `bytes` more transaction bytes in this phase (the bulk copies issued next
// complete them); the phase completes when both the arrivals and the bytes are in.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile(
      "{\n"
      ".reg .b64 st;\n"
      "mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n"
      "}\n" ::"r"(bar), "r"(bytes)
      : "memory");
}
// The bulk copy engine (sm_90, no tensor map): `bytes` (a multiple of 16; both addresses 16-byte aligned)
// from global memory to this block's shared memory, counted on `bar`'s transaction bytes. The bytes are
// visible to threads that then see the phase complete (and to wgmma: the same async proxy).
__device__ __forceinline__ void bulk_copy_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
// Whether the phase of this parity has completed (acquire).
__device__ __forceinline__ bool mbar_test(uint32_t bar, uint32_t parity) {
  uint32_t ok;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(ok)
      : "r"(bar), "r"(parity)
      : "memory");
  return ok != 0;
}
// Waits for the phase of this parity (phase n has parity n % 2; a fresh barrier is in phase 0).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  while (!mbar_test(bar, parity)) {
  }
}

// Named barriers (0 is __syncthreads): `threads` (a multiple of 32) take part; arrive does not wait.
template <int ID, int THREADS>
__device__ __forceinline__ void named_bar_sync() {
  asm volatile("bar.sync %0, %1;\n" ::"n"(ID), "n"(THREADS) : "memory");
}
template <int ID, int THREADS>
__device__ __forceinline__ void named_bar_arrive() {
  asm volatile("bar.arrive %0, %1;\n" ::"n"(ID), "n"(THREADS) : "memory");
}

}  // namespace ds::backend::cuda
