// The draft's FP8 copy of the LM head (model/draft_head.h): DeepSeek's block quantisation (e4m3, one scale
// per 128 x 128 block, amax / 448) within e4m3's rounding on random matrices with partial edge blocks, and
// the copy the CPU backend loads equal to the codes times their scales.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "backend/backend.h"
#include "model/draft_head.h"
#include "tensor/dtype.h"

using namespace ds;

namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 0.02f);
  std::vector<float> w(size_t(rows * cols));
  for (auto& x : w) x = d(rng);
  // One block 1000x larger and one all zero: scales are per block, not per matrix.
  for (int64_t r = 0; r < std::min<int64_t>(rows, 128); ++r)
    for (int64_t c = 0; c < std::min<int64_t>(cols, 128); ++c) w[size_t(r * cols + c)] *= 1000.f;
  if (rows > 128 && cols > 256)
    for (int64_t r = 128; r < std::min<int64_t>(rows, 256); ++r)
      for (int64_t c = 128; c < 256; ++c) w[size_t(r * cols + c)] = 0.f;
  return w;
}

}  // namespace

TEST(DraftHead, BlockQuantisationIsWithinE4m3Rounding) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{300, 200}, {128, 128}, {517, 384}, {5, 7}}) {
    const std::vector<float> w = random_matrix(rows, cols, uint32_t(rows * 31 + cols));
    const model::Fp8Blocks q = model::quantize_fp8_blocks(w.data(), rows, cols);
    const int64_t nb = (rows + 127) / 128, kb = (cols + 127) / 128;
    ASSERT_EQ(q.block_rows, nb);
    ASSERT_EQ(q.block_cols, kb);
    ASSERT_EQ(q.scales.size(), size_t(nb * kb));
    std::vector<float> amax(size_t(nb * kb), 0.f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float& a = amax[size_t((r / 128) * kb + c / 128)];
        a = std::max(a, std::fabs(w[size_t(r * cols + c)]));
      }
    for (int64_t b = 0; b < nb * kb; ++b)
      EXPECT_EQ(q.scales[size_t(b)], amax[size_t(b)] > 0 ? amax[size_t(b)] / 448.f : 1.f) << rows << "x" << cols << " block " << b;
    double worst = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float s = q.scales[size_t((r / 128) * kb + c / 128)];
        const float x = w[size_t(r * cols + c)], y = fp8e4m3_to_f32(q.codes[size_t(r * cols + c)]) * s;
        // e4m3: 3 mantissa bits, so half an ulp is 2^-4 of the value for normals; below 2^-6 (subnormal)
        // the step is 2^-9, half of it 2^-10, in units of the scale.
        const double bound = std::max(std::ldexp(std::fabs(double(x)), -4), std::ldexp(double(s), -10)) * (1 + 1e-6);
        ASSERT_LE(std::fabs(double(x) - y), bound) << rows << "x" << cols << " at " << r << "," << c << ": " << x
                                                   << " -> " << y;
        worst = std::max(worst, std::fabs(double(x) - y) / std::max(1e-30, double(std::fabs(x))));
      }
    // Each block's largest magnitude lands on 448 (code 0x7e), none beyond.
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) EXPECT_LE(std::fabs(fp8e4m3_to_f32(q.codes[size_t(r * cols + c)])), 448.f);
    EXPECT_GT(worst, 0) << "some value must round";
  }
}

TEST(DraftHead, CpuBackendLoadsTheCodesTimesTheirScales) {
  auto be = backend::make_cpu_backend(1);
  const int64_t rows = 260, cols = 300;
  const std::vector<float> w = random_matrix(rows, cols, 7);
  backend::HostTensor hw{"head", DType::F32, {rows, cols}, w.data()};
  const backend::LinearWeight head = be->load_linear(hw, nullptr);
  const backend::LinearWeight draft = model::fp8_draft_head(*be, head);
  ASSERT_EQ(draft.out_features, rows);
  ASSERT_EQ(draft.in_features, cols);
  const model::Fp8Blocks q = model::quantize_fp8_blocks(w.data(), rows, cols);
  const Tensor got = be->to_host_f32(draft.w);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(got.f32()[r * cols + c],
                fp8e4m3_to_f32(q.codes[size_t(r * cols + c)]) * q.scales[size_t((r / 128) * q.block_cols + c / 128)])
          << r << "," << c;
  // The head itself is untouched (the main model keeps reading it).
  const Tensor main = be->to_host_f32(head.w);
  EXPECT_EQ(main.f32()[5], w[5]);
}

// rescore_topk's host reference: the k best entries of each row (the lower id among equal values, never a
// NaN) rescored against the exact rows, every other entry -inf.
TEST(DraftHead, RescoreTopkKeepsTheBestCandidatesWithExactValues) {
  auto be = backend::make_cpu_backend(1);
  const int64_t V = 50, H = 6;
  std::vector<float> wv(size_t(V * H));
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = float(int(i % 13) - 6) / 8.f;
  backend::HostTensor hw{"w", DType::F32, {V, H}, wv.data()};
  const backend::LinearWeight w = be->load_linear(hw, nullptr);
  Tensor x = Tensor::empty({3, H}, DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = float(i % 5) - 2.f;
  const float inf = std::numeric_limits<float>::infinity();
  Tensor logits = Tensor::empty({3, V}, DType::F32);
  for (int64_t i = 0; i < logits.numel(); ++i) logits.f32()[i] = float(i % V) * 0.01f;  // ascending: the last k win
  float* r1 = logits.f32() + V;  // row 1: ties at the top (lower ids first), a NaN above everything
  r1[3] = r1[7] = r1[9] = 5.f;
  r1[11] = std::nanf("");
  float* r2 = logits.f32() + 2 * V;  // row 2: only two finite entries, the rest NaN
  for (int64_t i = 0; i < V; ++i) r2[i] = std::nanf("");
  r2[4] = 1.f, r2[40] = -inf;
  be->rescore_topk(logits, x, w, 4);
  auto exact = [&](int64_t r, int64_t id) {
    float s = 0.f;
    for (int64_t j = 0; j < H; ++j) s += x.f32()[r * H + j] * wv[size_t(id * H + j)];
    return s;
  };
  const std::vector<std::vector<int64_t>> want = {{46, 47, 48, 49}, {3, 7, 9, 49}, {4, 40}};
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t id = 0; id < V; ++id) {
      const bool kept = std::find(want[size_t(r)].begin(), want[size_t(r)].end(), id) != want[size_t(r)].end();
      const float got = logits.f32()[r * V + id];
      if (kept) EXPECT_EQ(got, exact(r, id)) << "row " << r << " id " << id;
      else EXPECT_EQ(got, -inf) << "row " << r << " id " << id;
    }
  }
}
