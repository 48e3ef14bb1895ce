#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tensor/dtype.h"

using namespace ds;

TEST(DType, Fp8RoundTripsEveryCode) {
  for (int v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(fp8e4m3_to_f32(uint8_t(v))));
      continue;
    }
    EXPECT_EQ(f32_to_fp8e4m3(fp8e4m3_to_f32(uint8_t(v))), v) << v;
  }
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

// Nearest representable value, ties to even mantissa, by brute force over all codes.
static float fp8_nearest(float x) {
  float best = 0;
  double bestd = 1e30;
  int bestcode = 0;
  for (int v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) continue;
    float f = fp8e4m3_to_f32(uint8_t(v));
    double d = std::fabs(double(f) - double(x));
    if (d < bestd || (d == bestd && (v & 1) == 0 && (bestcode & 1) == 1)) { bestd = d; best = f; bestcode = v; }
  }
  return best;
}

TEST(DType, Fp8RoundsToNearestEvenAndSaturates) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-500.f, 500.f);
  for (int i = 0; i < 20000; ++i) {
    float x = u(rng) * std::ldexp(1.0f, -int(rng() % 12));
    float expect = std::fabs(x) >= 448 ? std::copysign(448.f, x) : fp8_nearest(x);
    EXPECT_EQ(fp8e4m3_to_f32(f32_to_fp8e4m3(x)), expect) << x;
  }
  EXPECT_EQ(fp8e4m3_to_f32(f32_to_fp8e4m3(1e9f)), 448.f);
}

TEST(DType, Bf16AndF16) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);  // tie -> even (up)
  for (uint32_t h = 0; h < 0x7c00; ++h) EXPECT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h);
}
