// The load-time finiteness check of checkpoint tensors (model/weights_finite.h): every dtype's NaN and
// infinity patterns are found at their index (also deep into multi-block buffers, at odd offsets and
// in the tail), finite extremes are not, and the error names the tensor and the element.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "model/weights_finite.h"
#include "tensor/dtype.h"
#include "util/error.h"

using namespace ds;
using ds::model::first_non_finite;

namespace {

template <typename U>
std::vector<uint8_t> buffer(int64_t n, U fill, int64_t at, U bad, int64_t offset = 0) {
  std::vector<uint8_t> b(size_t(offset) + size_t(n) * sizeof(U));
  for (int64_t i = 0; i < n; ++i) std::memcpy(b.data() + offset + i * int64_t(sizeof(U)), &fill, sizeof(U));
  if (at >= 0) std::memcpy(b.data() + offset + at * int64_t(sizeof(U)), &bad, sizeof(U));
  return b;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

TEST(WeightsFinite, FindsEachDtypesNanAndInfinity) {
  struct Case {
    DType dtype;
    uint64_t finite_max, bad[3];
  };
  const Case cases[] = {
      {DType::F32, bits(std::numeric_limits<float>::max()), {bits(NAN), bits(INFINITY), bits(-INFINITY)}},
      {DType::BF16, 0x7F7F, {0x7FC0, 0x7F80, 0xFF80}},
      {DType::F16, 0x7BFF, {0x7E00, 0x7C00, 0xFC00}},
      {DType::F8_E4M3, 0x7E, {0x7F, 0xFF, 0xFF}},  // e4m3fn: 448 is the largest, S.1111.111 the NaN
  };
  for (const auto& c : cases) {
    for (int64_t n : {int64_t(1), int64_t(13), int64_t(1 << 20) + 5}) {  // tail only, small, two blocks
      for (int64_t offset : {0, 1}) {                                     // unaligned data too
        for (uint64_t bad : c.bad) {
          for (int64_t at : {int64_t(0), n / 2, n - 1}) {
            std::vector<uint8_t> b;
            if (c.dtype == DType::F32) b = buffer<uint32_t>(n, uint32_t(c.finite_max), at, uint32_t(bad), offset);
            else if (c.dtype == DType::F8_E4M3) b = buffer<uint8_t>(n, uint8_t(c.finite_max), at, uint8_t(bad), offset);
            else b = buffer<uint16_t>(n, uint16_t(c.finite_max), at, uint16_t(bad), offset);
            auto got = first_non_finite(b.data() + offset, c.dtype, n);
            ASSERT_TRUE(got) << dtype_name(c.dtype) << " n " << n << " at " << at;
            EXPECT_EQ(*got, at) << dtype_name(c.dtype) << " n " << n;
          }
        }
        std::vector<uint8_t> ok;
        if (c.dtype == DType::F32) ok = buffer<uint32_t>(n, uint32_t(c.finite_max), -1, 0, offset);
        else if (c.dtype == DType::F8_E4M3) ok = buffer<uint8_t>(n, uint8_t(c.finite_max), -1, 0, offset);
        else ok = buffer<uint16_t>(n, uint16_t(c.finite_max), -1, 0, offset);
        EXPECT_FALSE(first_non_finite(ok.data() + offset, c.dtype, n)) << dtype_name(c.dtype) << " n " << n;
      }
    }
  }
}

TEST(WeightsFinite, FirstOfSeveralAndTheMessage) {
  auto b = buffer<uint16_t>(6 * 1000, 0x3F80, 2 * 1000 + 7, 0x7FC0);
  const uint16_t inf = 0x7F80;
  std::memcpy(b.data() + 2 * (5 * 1000), &inf, 2);  // a later one too
  EXPECT_EQ(*first_non_finite(b.data(), DType::BF16, 6000), 2007);
  try {
    model::check_finite("model.layers.0.mlp.down_proj.weight", "model-00001.safetensors", b.data(), DType::BF16,
                        {6, 1000});
    FAIL() << "accepted";
  } catch (const ds::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'model.layers.0.mlp.down_proj.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model-00001.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 7]"), std::string::npos) << msg;
  }
  // Integer tensors are never non-finite.
  std::vector<uint8_t> ints(64, 0xFF);
  EXPECT_FALSE(first_non_finite(ints.data(), DType::I32, 16));
}
