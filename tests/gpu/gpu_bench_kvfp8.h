// gpu_bench's FP8 KV cache table (gpu_bench_kvfp8.cpp).
#pragma once
#include "backend/cuda/cuda_backend.h"

namespace ds::gpubench {
// Prints the MLA and indexer tables (BF16 / fp32 vs packed FP8 pools); false when the indexer's scores over
// FP8 keys differ from those over the same keys in fp32. hbm_gbs: the ceiling measured in the same process.
bool bench_kv_fp8(backend::cuda::CudaBackend& be, double hbm_gbs);
}  // namespace ds::gpubench
