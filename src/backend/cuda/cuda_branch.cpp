// CudaBackend::branch: a step's independent ops on a second stream (CudaOptions::overlap).
//
// A decode step is a chain of small kernels, most of them far from filling the GPU; the attention block has
// a few that depend only on the layer's first projections (the latent and indexer-key cache writes, the
// indexer's head weights) and can run beside the query path (model/layer.cpp). branch() records an event
// on the main stream, makes the side stream wait for it, and issues the branch's ops there; join_branch()
// makes the main stream wait for the side's last op. Inside a captured step the same calls become a fork
// and a join of the graph.
//
// What the two lanes must not share while a branch is open:
//   - scratch: the GEMV's counters and the cuBLAS(Lt) workspaces are per lane (Lane, swapped in);
//   - memory: a block freed on the host during the window may still be read by the other lane, so the
//     allocator holds such frees back until the join (DeviceAllocator::hold_frees);
//   - uploads: a cached upload made on one lane is copied in that lane's order, so the other lane does not
//     reuse it until the join (Upload::lane);
//   - the staging ring: its wrap waits for both streams (stage_copy).
// Kernels keep their programmatic-launch rule (pdl.cuh): each waits in pdl_prologue for every kernel it
// depends on, so a dependent's early start is safe across the fork and the join too.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_batched.h"
#include "backend/cuda/gemm_lt.h"
#include "util/log.h"

namespace ds::backend::cuda {

void CudaBackend::make_side_lane() {
  if (side_.stream) return;
  DS_CUDA_CHECK(cudaStreamCreateWithFlags(&side_.stream, cudaStreamNonBlocking));
  DS_CUDA_CHECK(cudaEventCreateWithFlags(&fork_event_, cudaEventDisableTiming));
  DS_CUDA_CHECK(cudaEventCreateWithFlags(&join_event_, cudaEventDisableTiming));
  side_.lt = std::make_unique<LtGemm>();
  side_.batched = std::make_unique<BatchedGemm>();  // (made here: not inside a step being captured)
  side_.gemv_counters =
      Tensor::from_storage(persistent_alloc(kGemvMaxCounters * 4), {kGemvMaxCounters}, DType::I32);
  DS_CUDA_CHECK(cudaMemsetAsync(side_.gemv_counters.raw(), 0, kGemvMaxCounters * 4, side_.stream));
  DS_CUDA_CHECK(cudaStreamSynchronize(side_.stream));
}

void CudaBackend::set_overlap(bool on) {
  DS_CHECK(!branch_open_ && !capturing_, "set_overlap inside a branch or a captured step");
  if (on) make_side_lane();
  opts_.overlap = on;
}

void CudaBackend::swap_lane() {
  std::swap(stream_, side_.stream);
  std::swap(gemv_counters_, side_.gemv_counters);
  std::swap(lt_, side_.lt);
  std::swap(batched_, side_.batched);
  lane_ = 1 - lane_;
}

void CudaBackend::branch(const std::function<void()>& ops, int64_t tokens) {
  // In order: overlap off; a wide step (prefill chunks: measured 1.3% slower with the branches beside);
  // profiling (each op timed alone); the kernel-trace build, whose notes are paired
  // with the launches in issue order.
#ifdef DSSERVE_KERNEL_TRACE
  constexpr bool trace = true;
#else
  constexpr bool trace = false;
#endif
  if (!opts_.overlap || tokens > opts_.branch_max_tokens || profile_ || trace) {
    last_branch_path_ = "inline";
    ops();
    return;
  }
  DS_CHECK(lane_ == 0, "CUDA backend: a branch inside a branch");
  join_branch();  // one at a time (a branch left open by an op that threw is joined here)
  make_side_lane();
  DS_CUDA_CHECK(cudaEventRecord(fork_event_, stream_));
  DS_CUDA_CHECK(cudaStreamWaitEvent(side_.stream, fork_event_, 0));
  branch_alloc_ = alloc_;
  branch_alloc_->hold_frees(true);
  branch_open_ = true;
  swap_lane();
  try {
    ops();
  } catch (...) {
    swap_lane();
    DS_CUDA_CHECK(cudaEventRecord(join_event_, side_.stream));
    join_branch();
    throw;
  }
  swap_lane();
  DS_CUDA_CHECK(cudaEventRecord(join_event_, side_.stream));
  last_branch_path_ = "stream";
}

void CudaBackend::join_branch() {
  if (!branch_open_) return;
  DS_CUDA_CHECK(cudaStreamWaitEvent(stream_, join_event_, 0));
  branch_open_ = false;
  // From here the main stream runs after everything either lane was given: what was freed may be reused.
  branch_alloc_->hold_frees(false);
  branch_alloc_.reset();
  for (auto& u : uploads_) u.lane = -1;
}

}  // namespace ds::backend::cuda
