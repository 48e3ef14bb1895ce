// Backend::rescore_topk on host memory (the CPU backend's; device backends override it): the reference the
// CUDA kernel (k_rescore_topk.cu) is checked against.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "util/error.h"

namespace ds::backend {

void Backend::rescore_topk(Tensor& logits, const Tensor& x, const LinearWeight& w, int k) {
  const int64_t R = logits.dim(0), V = logits.row_size(), H = w.in_features;
  DS_CHECK(logits.device() == Device::CPU && x.device() == Device::CPU && w.w.device() == Device::CPU &&
               logits.dtype() == DType::F32 && x.dtype() == DType::F32 && w.w.dtype() == DType::F32,
           "rescore_topk on the {} backend: logits {}, x {}, w {} (host F32 expected)", name(), logits.describe(),
           x.describe(), w.w.describe());
  DS_CHECK(x.dim(0) == R && x.row_size() == H && V <= w.out_features && k >= 1 && k <= kMaxRescoreCandidates,
           "rescore_topk: logits {}, x {}, w [{}, {}], k {}", logits.describe(), x.describe(), w.out_features, H, k);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<int32_t> ids;
  for (int64_t r = 0; r < R; ++r) {
    float* row = logits.f32() + r * V;
    ids.clear();
    for (int64_t i = 0; i < V; ++i)
      if (!std::isnan(row[i])) ids.push_back(int32_t(i));
    const size_t n = std::min(ids.size(), size_t(k));
    // Larger value first, the lower id among equal values (ids are ascending, so a stable order keeps it).
    std::partial_sort(ids.begin(), ids.begin() + ptrdiff_t(n), ids.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    std::vector<float> exact(n);
    const float* xr = x.f32() + r * H;
    for (size_t c = 0; c < n; ++c) {
      const float* wr = w.w.f32() + int64_t(ids[c]) * H;
      float s = 0.f;
      for (int64_t j = 0; j < H; ++j) s += xr[j] * wr[j];
      exact[c] = s;
    }
    std::fill(row, row + V, neg_inf);
    for (size_t c = 0; c < n; ++c) row[ids[c]] = exact[c];
  }
}

}  // namespace ds::backend
