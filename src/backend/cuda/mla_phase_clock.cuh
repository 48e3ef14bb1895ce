// Where each role of the wgmma MLA kernels (k_mla_wgmma.cu, k_mla_wgmma_pair.cu) spends its cycles, in a
// diagnostic build only (cmake -DDSSERVE_MLA_PHASES=ON; `gpu_bench mla` prints the table). Nsight Compute's
// stall samples mix the three warpgroups and cannot say which wait sits on the critical path; here lane 0 of
// the first warp of each role (warpgroup 0, warpgroup 1, the producer) reads clock64 at each phase boundary
// of its loop and adds the cycles since the last boundary to that phase's counter in shared memory; at the
// end each block adds its counters to a device-wide total. One thread per role writes its own counters: no
// atomics in the loop, an LDS + STS per boundary (a few tens of cycles of a ~5,000-cycle step; not measured
// apart). In the normal build the clock is an empty struct and none of this is compiled.
#pragma once
#include <cuda_runtime.h>

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
// A kernel file's counters (each .cu file its own: no relocatable device code), the kernel's view of them
// (its Plan's `phase` bytes of shared memory, `sm` its base), and the host function that reads them.
#define MLA_PHASE_COUNTERS __device__ unsigned long long g_phase_total[mla_phases::kRoles * mla_phases::kSlots]
#define MLA_PHASE_SMEM (sm + P::phase)
#define MLA_PHASE_TOTAL g_phase_total
#define MLA_PHASE_TOTALS_FN(name) \
  bool name(unsigned long long* out, bool reset) { return mla_phases::read_totals(g_phase_total, out, reset); }
// Copies the totals to out (if not null), then zeroes them if reset.
template <typename Counters>
bool read_totals(const Counters& total, unsigned long long* out, bool reset) {
  if (out && cudaMemcpyFromSymbol(out, total, sizeof(Counters)) != cudaSuccess) return false;
  static const Counters zeros = {};
  return !reset || cudaMemcpyToSymbol(total, zeros, sizeof(Counters)) == cudaSuccess;
}
#else
#define MLA_PHASE_CLOCK(smem, role, record) mla_phases::Clock clk(nullptr, role, record)
#define MLA_PHASE_FLUSH(total, role) clk.flush(nullptr, role)
#define MLA_PHASE_COUNTERS static_assert(true)
#define MLA_PHASE_SMEM nullptr
#define MLA_PHASE_TOTAL nullptr
#define MLA_PHASE_TOTALS_FN(name) \
  bool name(unsigned long long*, bool) { return false; }
struct Clock {
  __device__ Clock(void*, int, bool) {}
  __device__ __forceinline__ void mark(int) {}
  __device__ __forceinline__ void step() {}
  __device__ void flush(unsigned long long*, int) {}
};
#endif

}  // namespace ds::backend::cuda::mla_phases
