// Argument checks of the FP8 KV pool ops (backend/kv_fp8.h), shared by the CPU and CUDA backends (kept
// out of kv_fp8.h, which nvcc compiles too).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/kv_fp8.h"
#include "tensor/tensor.h"

namespace ds::backend {

// `pool` is a U8 [rows, L.bytes()] tensor.
void check_fp8_pool(const Tensor& pool, const KvFp8Layout& L, const char* op);
// cache_write_fp8: the pool, quant [T, quant_dim] and rest [T, bf16_dim] F32 for T slots in [-1, rows).
void check_fp8_write(const Tensor& pool, const KvFp8Layout& L, const Tensor& quant, const Tensor* rest,
                     const std::vector<int32_t>& slots);
// cache_gather_fp8: the pool and slots in [0, rows).
void check_fp8_gather(const Tensor& pool, const KvFp8Layout& L, const std::vector<int32_t>& slots);

}  // namespace ds::backend
