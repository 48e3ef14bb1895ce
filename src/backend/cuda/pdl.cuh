// Programmatic dependent launch (Hopper): a kernel launched with launch_k may be scheduled while the
// kernel before it in the stream is still running — its blocks start as the other's drain, instead of
// after the launch gap — and waits at pdl_prologue() until that kernel has finished and its writes are
// visible. Decode steps are chains of ~40 small kernels per layer, where those gaps are a large part of
// the step (docs/PERF.md). Captured into CUDA graphs as programmatic edges.
//
// The rule that keeps this correct: every kernel launched with launch_k calls pdl_prologue() before it
// touches global memory (reads or writes: a buffer it writes may still be read by the kernel before, e.g.
// one the caching allocator handed over). A kernel so launched that finished before its predecessor would
// break stream order; one that waits in turn waited for the one before it, so the chain stays ordered.
// Kernels launched with <<< >>> (or by libraries) keep plain stream order.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <utility>

#include "backend/cuda/kernel_trace.h"

namespace ds::backend::cuda {

#if defined(DSSERVE_KERNEL_TRACE) && defined(__CUDACC__)
// The diagnostic build's notes (kernel_trace.h): this file's copy of the buffer pointer, set by the host.
namespace {
__device__ KernelTraceBuf* g_kernel_trace = nullptr;
void kernel_trace_set_here(void* p) { cudaMemcpyToSymbol(g_kernel_trace, &p, sizeof p); }
[[maybe_unused]] const int kernel_trace_registered = kernel_trace_register(&kernel_trace_set_here);
__device__ __forceinline__ unsigned long long kernel_trace_clock() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
}  // namespace
#endif

// Waits for the preceding kernel (a no-op when not launched as a dependent), then lets the next kernel of
// the stream be scheduled early (it waits in its own prologue for this one to finish).
__device__ __forceinline__ void pdl_prologue() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#ifdef DSSERVE_KERNEL_TRACE
  const bool note = blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 && threadIdx.y == 0 &&
                    threadIdx.z == 0 && g_kernel_trace;
  const unsigned long long start = note ? kernel_trace_clock() : 0;
#endif
  asm volatile("griddepcontrol.wait;" ::: "memory");
#ifdef DSSERVE_KERNEL_TRACE
  if (note) {
    const unsigned long long waited = kernel_trace_clock();
    KernelTraceBuf* b = g_kernel_trace;
    const unsigned i = atomicAdd(&b->n, 1u);
    if (i < b->cap)
      reinterpret_cast<KernelTraceEntry*>(b + 1)[i] = {start, waited, gridDim.x, gridDim.y, gridDim.z,
                                                          blockDim.x * blockDim.y * blockDim.z};
  }
#endif
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The one exception to the rule above: memory no kernel of a step writes (model weights) may be read
// before pdl_prologue(). Weight-streaming kernels issue their first weight loads there, so the bytes are
// in flight while the kernel before them finishes (the next kernel is scheduled as soon as the one before
// passes its own prologue: at most two kernels of a stream overlap).

// Whether launch_k launches as a dependent: on when every device the process set up is sm_90 or newer and
// DSSERVE_PDL is not 0 (CudaBackend's constructor decides; set_pdl for tests and A/B runs).
std::atomic<bool>& pdl_flag();
inline bool pdl_enabled() { return pdl_flag().load(std::memory_order_relaxed); }
// Whether weight-streaming kernels issue their first weight loads before pdl_prologue (the exception
// above; the GEMV); DSSERVE_EARLY_WEIGHTS=0 turns it off (A/B runs, or to rule it out).
bool early_weights();

template <typename... Params, typename... Args>
void launch_k(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
#ifdef DSSERVE_KERNEL_TRACE
  kernel_trace_note_launch(reinterpret_cast<const void*>(kernel), grid, block);
#endif
  // A failed launch is reported by the caller's check_launch (cudaGetLastError), as for <<< >>>.
  (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace ds::backend::cuda
