#include "runtime/kv_dtype.h"

#include <algorithm>

#include "util/error.h"

namespace ds::runtime {

const std::vector<std::string>& kv_cache_dtype_names() {
  static const std::vector<std::string> names = {"auto", "bf16", "bfloat16", "fp32", "float32", "fp8_e4m3"};
  return names;
}

DType kv_cache_dtype_named(const std::string& name, DType auto_type) {
  DS_CHECK(name != "fp8_e5m2", "--kv-cache-dtype fp8_e5m2: not supported; DeepSeek's FP8 KV layout is fp8_e4m3");
  const auto& names = kv_cache_dtype_names();
  DS_CHECK(std::find(names.begin(), names.end(), name) != names.end(),
           "--kv-cache-dtype '{}' is not one of auto, bf16, bfloat16, fp32, float32, fp8_e4m3", name);
  if (name == "auto") return auto_type;
  return name == "fp8_e4m3" ? DType::F8_E4M3 : (name == "bf16" || name == "bfloat16") ? DType::BF16 : DType::F32;
}

DType resolve_kv_cache_dtype(const std::string& name, const backend::Backend& be) {
  const DType t = kv_cache_dtype_named(name, be.supports_kv_dtype(DType::BF16) ? DType::BF16 : be.act_dtype());
  if (name == "auto") return t;
  DS_CHECK(be.supports_kv_dtype(t), "--kv-cache-dtype {}: the {} backend has no {} KV cache; use auto", name,
           be.name(), kv_cache_dtype_label(t));
  return t;
}

std::string kv_cache_dtype_label(DType t) {
  switch (t) {
    case DType::BF16: return "bf16";
    case DType::F32: return "fp32";
    case DType::F8_E4M3: return "fp8_e4m3";
    default: return std::string(dtype_name(t));
  }
}

}  // namespace ds::runtime
