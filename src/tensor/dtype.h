// Element types of tensors and checkpoints, and the scalar conversions between them.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace ds {

enum class DType : uint8_t { F32, F16, BF16, F8_E4M3, I32, I64, U8 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // safetensors spelling: "F32", "BF16", "F8_E4M3", ...
// Parses a safetensors dtype string; returns false for unknown ones.
bool parse_dtype(std::string_view s, DType* out);

// bfloat16 <-> float (round to nearest even, NaN kept).
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE half -> float.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// FP8 e4m3fn (bias 7, no infinities, max 448, NaN = 0x7f/0xff).
float fp8e4m3_to_f32(uint8_t v);
// Round to nearest even, saturating to +-448 (what DeepSeek's quantisers do after clamping).
uint8_t f32_to_fp8e4m3(float f);

}  // namespace ds
