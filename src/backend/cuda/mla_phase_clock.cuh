// Where each role of the wgmma MLA kernels (k_mla_wgmma.cu, k_mla_wgmma_pair.cu) spends its cycles, in a diagnostic build
// only (cmake -DDSSERVE_MLA_PHASES=ON; `gpu_bench mla` prints the table). Nsight Compute's stall samples mix
// the three warpgroups and cannot say which wait sits on the critical path; here lane 0 of the first warp of
// each role (warpgroup 0, warpgroup 1, the producer) reads clock64 at each phase boundary of its loop and adds
// the cycles since the last boundary to that phase's counter in shared memory; at the end each block adds its
// counters to a device-wide total. One thread per role writes its own counters: no atomics in the loop, an
// LDS + STS per boundary (~1-2% of a step). In the normal build the clock is an empty struct and none of
// this is compiled.
#pragma once
#include <cstdint>

namespace ds::backend::cuda::mla_phases {

constexpr int kRoles = 3;     // warpgroup 0, warpgroup 1, producer
constexpr int kSlots = 16;    // phases 0-13, 14: outside the loop (prologue, epilogue), 15: steps
constexpr int kOutside = 14, kSteps = 15;
constexpr int kSmemBytes = kRoles * kSlots * 8;

#ifdef DSSERVE_MLA_PHASES
__device__ __forceinline__ long long cycles() {
  long long c = 0;
#ifdef __CUDA_ARCH__
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(c));
#endif
  return c;
}
struct Clock {
  unsigned long long* acc;  // this role's kSlots counters in shared memory, or null (not recording)
  long long t;
  __device__ Clock(void* smem, int role, bool record) {
    acc = record ? static_cast<unsigned long long*>(smem) + role * kSlots : nullptr;
    t = cycles();
    if (acc)
      for (int i = 0; i < kSlots; ++i) acc[i] = 0;
  }
  // The cycles since the last boundary belong to phase `slot`.
  __device__ __forceinline__ void mark(int slot) {
    if (acc) {
      const long long n = cycles();
      acc[slot] += static_cast<unsigned long long>(n - t);
      t = n;
    }
  }
  __device__ __forceinline__ void step() {
    if (acc) acc[kSteps] += 1;
  }
  // Adds this role's counters to the device-wide totals [kRoles][kSlots].
  __device__ void flush(unsigned long long* total, int role) {
    mark(kOutside);
    if (acc)
      for (int i = 0; i < kSlots; ++i) atomicAdd(total + role * kSlots + i, acc[i]);
  }
};
#define MLA_PHASE_CLOCK(smem, role, record) mla_phases::Clock clk(smem, role, record)
#define MLA_PHASE_FLUSH(total, role) clk.flush(total, role)
#else
#define MLA_PHASE_CLOCK(smem, role, record) mla_phases::Clock clk(nullptr, role, record)
#define MLA_PHASE_FLUSH(total, role) clk.flush(nullptr, role)
struct Clock {
  __device__ Clock(void*, int, bool) {}
  __device__ __forceinline__ void mark(int) {}
  __device__ __forceinline__ void step() {}
  __device__ void flush(unsigned long long*, int) {}
};
#endif

}  // namespace ds::backend::cuda::mla_phases
