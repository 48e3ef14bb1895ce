// Pieces every Hopper warpgroup MMA (wgmma, sm_90a) kernel needs, whatever the operand type: shared-memory
// matrix descriptors for 128-byte-swizzled tiles, the fence / commit / wait instructions, the proxy fence
// for operands written by ordinary stores, and a register pin for accumulators. The instructions of each
// operand type live beside this: wgmma_fp8.cuh (e4m3), wgmma_bf16.cuh (bf16).
//
// 128-byte swizzle: 16-byte chunk c of 128-byte row r lies at r * 128 + ((c ^ (r % 8)) * 16); a tile of
// 8-row groups starts 1024-byte aligned (the hardware applies the XOR to address bits 4-6 from bits 7-9).
// The accumulator fragment of m64nN: warp w of the warpgroup holds rows 16w + lane / 4 (+ 8), d[4j + q] at
// column 8j + 2 (lane % 4) + (q & 1), row + 8 for q >= 2 (PTX ISA, "wgmma register fragments").
#pragma once
#include <cstdint>

namespace ds::backend::cuda {

// Descriptor of a K-major operand (PTX ISA "matrix descriptor"): rows of 128 bytes along K, 8-row groups
// 1024 bytes apart. Start address >> 4 in bits 0-13; the leading byte offset (unused for swizzled K-major
// tiles, 1 by convention) in 16-29; the stride byte offset (1024 >> 4) in 32-45; swizzle mode 1 (128-byte)
// in 62-63. Within a 128-byte row, the k-th 32-byte step of K is the start address + 32 k.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_byte_addr) {
  return uint64_t((smem_byte_addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

// Descriptor of an MN-major operand (16-bit types only; the instruction's transpose bit set): 128-byte rows
// hold 64 consecutive M/N elements at one K index, 8 such rows (8 K indices) form a swizzle atom.
// mn_block_bytes: from one 64-element M/N block to the next (the "leading" byte offset of this layout);
// k8_bytes: from one group of 8 K rows to the next (the "stride" byte offset). CUTLASS's canonical form:
// Swizzle<3,4,3> o ((8,8,m),(8,k)) : ((1,8,LBO),(64,SBO)) in elements.
__device__ __forceinline__ uint64_t wgmma_desc_sw128_mn(uint32_t smem_byte_addr, uint32_t mn_block_bytes,
                                                        uint32_t k8_bytes) {
  return uint64_t((smem_byte_addr & 0x3FFFF) >> 4) | (uint64_t((mn_block_bytes >> 4) & 0x3FFF) << 16) |
         (uint64_t((k8_bytes >> 4) & 0x3FFF) << 32) | (uint64_t(1) << 62);
}

// Orders this thread's earlier register and shared-memory accesses before the next wgmma.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N committed wgmma groups of this warpgroup are pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared memory written through the generic proxy (st.shared, cp.async) becomes visible to the async
// proxy (wgmma operand reads): each writing thread, before the barrier that publishes it.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Pins an accumulator register at this point of the program: the compiler may not move its reads or
// writes across (around wgmma issue and wait, which it does not see as touching the registers).
__device__ __forceinline__ void reg_fence(float& r) { asm volatile("" : "+f"(r)::"memory"); }
template <int N>
__device__ __forceinline__ void reg_fence(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) reg_fence(r[i]);
}

}  // namespace ds::backend::cuda
