// The KV cache element type from its flag (`--kv-cache-dtype`, SGLang's names), for serve, bench model
// and the offline commands alike.
#pragma once
#include <string>
#include <vector>

#include "backend/backend.h"

namespace ds::runtime {

// auto, bf16, bfloat16, fp32, float32, fp8_e4m3 (SGLang's fp8_e5m2 is refused: no such layout here).
const std::vector<std::string>& kv_cache_dtype_names();
// auto: BF16 where the backend has it (SGLang's default on Hopper: the model's dtype), else the backend's
// activation dtype. fp8_e4m3: DType::F8_E4M3, the packed FP8 pools of backend/kv_fp8.h (656 + 132 bytes
// per token and layer at DeepSeek-V3.2's widths). Unknown names and types the backend lacks: an error
// naming the flag.
DType resolve_kv_cache_dtype(const std::string& name, const backend::Backend& be);
// The type `name` asks for, `auto` read as `auto_type`, before any backend is asked (memory-plan plans a CUDA
// deployment: auto = BF16). Unknown names: the same error as resolve_kv_cache_dtype's.
DType kv_cache_dtype_named(const std::string& name, DType auto_type);
// What the banner and /get_server_info call a resolved type: "bf16", "fp32", "fp8_e4m3".
std::string kv_cache_dtype_label(DType t);

}  // namespace ds::runtime
