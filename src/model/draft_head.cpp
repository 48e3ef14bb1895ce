#include "model/draft_head.h"

#include <algorithm>
#include <cmath>

#include "tensor/dtype.h"
#include "util/error.h"

namespace ds::model {

Fp8Blocks quantize_fp8_blocks(const float* w, int64_t rows, int64_t cols) {
  constexpr int64_t B = 128;
  Fp8Blocks q;
  q.block_rows = (rows + B - 1) / B;
  q.block_cols = (cols + B - 1) / B;
  q.codes.resize(size_t(rows * cols));
  q.scales.resize(size_t(q.block_rows * q.block_cols));
  // One band of 128 rows per iteration: its blocks' amax first, then the codes.
#pragma omp parallel for schedule(dynamic)
  for (int64_t br = 0; br < q.block_rows; ++br) {
    const int64_t r0 = br * B, r1 = std::min(rows, r0 + B);
    std::vector<float> amax(size_t(q.block_cols), 0.f);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float& m = amax[size_t(c / B)];
        m = std::max(m, std::fabs(w[r * cols + c]));
      }
    for (int64_t bc = 0; bc < q.block_cols; ++bc) {
      const float a = amax[size_t(bc)];
      q.scales[size_t(br * q.block_cols + bc)] = a > 0.f ? a / 448.f : 1.f;
    }
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c)
        q.codes[size_t(r * cols + c)] = f32_to_fp8e4m3(w[r * cols + c] / q.scales[size_t(br * q.block_cols + c / B)]);
  }
  return q;
}

backend::LinearWeight fp8_draft_head(backend::Backend& be, const backend::LinearWeight& head) {
  DS_CHECK(head.defined(), "fp8_draft_head: no head");
  if (head.w.dtype() == DType::F8_E4M3) return head;
  const int64_t rows = head.out_features, cols = head.in_features;
  Tensor host = be.to_host_f32(head.w);
  DS_CHECK(host.dim(0) == rows && host.dim(1) == cols, "fp8_draft_head: head {} is not [{}, {}]", host.describe(),
           rows, cols);
  Fp8Blocks q = quantize_fp8_blocks(host.data<float>(), rows, cols);
  host = Tensor();  // the fp32 copy (3.7 GB at full width) before the device copy is made
  backend::HostTensor hw{"draft_head.weight", DType::F8_E4M3, {rows, cols}, q.codes.data()};
  backend::HostTensor hs{"draft_head.weight_scale_inv", DType::F32, {q.block_rows, q.block_cols}, q.scales.data()};
  return be.load_linear(hw, &hs);
}

}  // namespace ds::model
