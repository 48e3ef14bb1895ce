// Checkpoint dtype -> fp32, including FP8 e4m3 block dequantisation (scale per 128x128 block, partial
// blocks at the edges, multiply by weight_scale_inv as DeepSeek ships it).
#include <array>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace ds::backend::cpu {

namespace {
const std::array<float, 256>& fp8_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = fp8e4m3_to_f32(uint8_t(i));
    return t;
  }();
  return table;
}
}  // namespace

void host_to_f32(const HostTensor& t, const HostTensor* scale_inv, float* out) {
  int64_t n = 1;
  for (auto d : t.shape) n *= d;
  switch (t.dtype) {
    case DType::F32: {
      auto* p = static_cast<const float*>(t.data);
      std::copy(p, p + n, out);
      break;
    }
    case DType::BF16: {
      auto* p = static_cast<const uint16_t*>(t.data);
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(p[i]);
      break;
    }
    case DType::F16: {
      auto* p = static_cast<const uint16_t*>(t.data);
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(p[i]);
      break;
    }
    case DType::F8_E4M3: {
      DS_CHECK(t.shape.size() == 2, "FP8 tensor '{}' must be 2-D", t.name);
      DS_CHECK(scale_inv != nullptr, "FP8 tensor '{}' has no weight_scale_inv", t.name);
      int64_t rows = t.shape[0], cols = t.shape[1];
      int64_t srows = (rows + 127) / 128, scols = (cols + 127) / 128;
      DS_CHECK(scale_inv->shape.size() == 2 && scale_inv->shape[0] == srows && scale_inv->shape[1] == scols,
               "scale '{}' must have shape [{}, {}] for FP8 weight [{}, {}]", scale_inv->name, srows, scols, rows,
               cols);
      std::vector<float> scales(size_t(srows * scols));
      host_to_f32(*scale_inv, nullptr, scales.data());
      auto* p = static_cast<const uint8_t*>(t.data);
      const auto& lut = fp8_table();
#pragma omp parallel for if (n > (1 << 16))
      for (int64_t r = 0; r < rows; ++r) {
        const float* srow = scales.data() + (r / 128) * scols;
        for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = lut[p[r * cols + c]] * srow[c / 128];
      }
      break;
    }
    default:
      fail("tensor '{}' has dtype {}, which is not a floating-point weight type", t.name, dtype_name(t.dtype));
  }
}

}  // namespace ds::backend::cpu
