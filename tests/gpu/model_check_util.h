// What gpu_model_check's files share (defined in gpu_model_check.cpp, namespace modelcheck).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "model/config.h"
#include "model/model.h"

namespace modelcheck {

// A CUDA backend in GEMM mode `mode` (default: CudaOptions' own) whose fresh allocations are NaN-filled (a read
// of unwritten memory shows).
std::unique_ptr<ds::backend::cuda::CudaBackend> poisoned_backend(
    ds::backend::cuda::GemmMode mode = ds::backend::cuda::CudaOptions{}.gemm);
// The demo preset's widths with 2 layers (1 dense + 1 MoE).
ds::model::ModelConfig demo_config();
// max |ours - ref| / max |ref| (INFINITY on a NaN).
double max_rel(const float* ours, const float* ref, int64_t n);
// Decode steps of `mg` through a recorder against the same padded step op by op (bitwise) and against `me`
// (no recorder) within `tol`: sequences of `lens` tokens, then `steps` steps of random subsets of them.
void run_graph_steps(const char* what, ds::backend::cuda::CudaBackend& be, ds::model::Model& mg,
                     ds::model::Model& me, const std::vector<int32_t>& lens, int steps, int32_t page, double tol,
                     bool lazy);

// gpu_model_check_forms.cpp
void check_fused_kv_model(ds::backend::cuda::GemmMode mode);
void check_bf16_absorb_model();
void check_overlap_model(ds::backend::cuda::GemmMode mode);

}  // namespace modelcheck
