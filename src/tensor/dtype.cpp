#include "tensor/dtype.h"

#include <cmath>

namespace ds {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::F8_E4M3: case DType::U8: return 1;
    case DType::I64: return 8;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  return "?";
}

bool parse_dtype(std::string_view s, DType* out) {
  static const struct { std::string_view name; DType t; } table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F8_E4M3", DType::F8_E4M3},
      {"I32", DType::I32}, {"I64", DType::I64}, {"U8", DType::U8}};
  for (auto& e : table)
    if (e.name == s) { *out = e.t; return true; }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(float(man), -24);
  else if (exp == 31) v = man ? NAN : INFINITY;
  else v = std::ldexp(float(man | 0x400), int(exp) - 25);
  return sign ? -v : v;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  float a = std::fabs(f);
  if (std::isnan(f)) return uint16_t(sign | 0x7e00);
  if (a >= 65520.0f) return uint16_t(sign | 0x7c00);
  if (a < 6.103515625e-05f) {  // subnormal: multiples of 2^-24, round half even via nearbyint
    return uint16_t(sign | uint32_t(std::nearbyint(a * 16777216.0f)));
  }
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5,1)
  uint32_t mant = uint32_t(std::nearbyint((m * 2 - 1) * 1024));
  uint32_t exp = uint32_t(e - 1 + 15);
  if (mant == 1024) { mant = 0; ++exp; }
  return uint16_t(sign | (exp << 10) | mant);
}

float fp8e4m3_to_f32(uint8_t v) {
  uint32_t sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
  float r;
  if (exp == 0xf && man == 7) r = NAN;
  else if (exp == 0) r = std::ldexp(float(man), -9);
  else r = std::ldexp(float(8 + man), int(exp) - 10);
  return sign ? -r : r;
}

uint8_t f32_to_fp8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  if (a < 0.015625f) {  // below min normal 2^-6: multiples of 2^-9
    return sign | uint8_t(std::nearbyint(a * 512.0f));  // 8 -> 0x08 = min normal, still right
  }
  int e;
  float m = std::frexp(a, &e);  // a = m*2^e, m in [0.5,1) -> 1.mmm * 2^(e-1)
  uint32_t mant = uint32_t(std::nearbyint((m * 2 - 1) * 8));
  int exp = e - 1 + 7;
  if (mant == 8) { mant = 0; ++exp; }
  if (exp > 15 || (exp == 15 && mant == 7)) return sign | 0x7e;
  return uint8_t(sign | (exp << 3) | mant);
}

}  // namespace ds
