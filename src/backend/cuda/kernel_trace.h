// Where a recorded decode step's time goes on the critical path (issue 18), in a diagnostic build only
// (cmake -DDSSERVE_KERNEL_TRACE=ON; DSSERVE_KERNEL_TRACE_OUT=<file> at run time). Nsight Compute times
// kernels alone; in a step they overlap (pdl.cuh), so their sum over-states the step. Here block 0 of every
// kernel that passes pdl_prologue() notes the global timer before and after its wait; after a graph replay
// the host pairs those notes with the kernels the capture launched (launch_k), and a kernel's cost is the
// time from its wait's end to the next kernel's: what removing it would save. The table goes to the file
// at exit, one section per captured step (tokens), means over its replays.
// In the normal build none of this exists (no timer reads, no extra loads in any kernel).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ds::backend::cuda {

struct KernelTraceEntry {
  unsigned long long start, waited;  // global timer (ns) before and after griddepcontrol.wait
  unsigned grid_x, grid_y, grid_z, block;
};
struct KernelTraceBuf {
  unsigned n, cap;  // entries written (atomic), room; the entries follow the header
  unsigned pad[2];
};

#ifdef DSSERVE_KERNEL_TRACE
// Whether tracing runs (DSSERVE_KERNEL_TRACE_OUT set).
bool kernel_trace_on();
// Each .cu file's copy of the device pointer registers its setter (pdl.cuh): no relocatable device code.
int kernel_trace_register(void (*set)(void*));
// launch_k: the kernel and its shape, kept while a step is being captured.
void kernel_trace_note_launch(const void* kernel, dim3 grid, dim3 block);
// cuda_step_capture.cpp: around a capture (returns the step's trace id), before and after a replay.
void kernel_trace_capture_begin();
int kernel_trace_capture_end(int64_t tokens);
void kernel_trace_replay_begin(cudaStream_t st);
void kernel_trace_replay_end(int id, cudaStream_t st);
#endif

}  // namespace ds::backend::cuda
