// CpuBackend: weights, memory and the element-wise / normalisation ops.
#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/gemm.h"
#include "util/error.h"

namespace ds::backend::cpu {

CpuBackend::CpuBackend(int num_threads) : num_threads_(num_threads) { make_current(); }

// OpenMP's team size is a per-thread setting: set it on whichever thread runs this backend's ops (a
// tensor-parallel rank runs on its own thread with its share of the cores).
void CpuBackend::make_current() {
  if (num_threads_ > 0) omp_set_num_threads(num_threads_);
}

LinearWeight CpuBackend::load_linear(const HostTensor& w, const HostTensor* scale_inv) {
  DS_CHECK(w.shape.size() == 2, "linear weight '{}' must be 2-D", w.name);
  LinearWeight lw;
  lw.out_features = w.shape[0];
  lw.in_features = w.shape[1];
  lw.w = Tensor::empty({lw.out_features, lw.in_features}, DType::F32);
  host_to_f32(w, scale_inv, lw.w.f32());
  return lw;
}

Tensor CpuBackend::load_tensor_f32(const HostTensor& t) {
  Tensor out = Tensor::empty(t.shape, DType::F32);
  host_to_f32(t, nullptr, out.f32());
  return out;
}

Tensor CpuBackend::alloc(std::vector<int64_t> shape, DType dtype) { return Tensor::zeros(std::move(shape), dtype); }

Tensor CpuBackend::to_host_f32(const Tensor& t) {
  DS_CHECK(t.dtype() == DType::F32, "to_host_f32: tensor is {}", t.describe());
  return t;
}

Tensor CpuBackend::embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) DS_CHECK(id >= 0 && id < table.dim(0), "token id {} is outside the vocabulary [0, {})", id, table.dim(0));
  return embedding_part(table, ids, 0);
}

Tensor CpuBackend::embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) {
  const int64_t V = table.dim(0), H = table.dim(1);
  Tensor out = Tensor::zeros({int64_t(ids.size()), H}, DType::F32);
  for (size_t t = 0; t < ids.size(); ++t) {
    const int64_t local = int64_t(ids[t]) - first;
    if (local >= 0 && local < V) std::memcpy(out.f32() + t * H, table.f32() + local * H, H * sizeof(float));
  }
  return out;
}

Tensor CpuBackend::embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) {
  DS_CHECK(ids.dtype() == DType::I32 && ids.device() == Device::CPU, "embedding_ids: ids are {}", ids.describe());
  const int32_t* p = ids.data<int32_t>();
  return embedding_part(table, std::vector<int32_t>(p, p + ids.numel()), first);
}

void CpuBackend::argmax_rows(const Tensor& logits, Tensor& ids) {
  const int64_t R = logits.dim(0), V = logits.row_size();
  DS_CHECK(logits.dtype() == DType::F32 && ids.dtype() == DType::I32 && ids.numel() >= R,
           "argmax_rows: {} into {}", logits.describe(), ids.describe());
  for (int64_t r = 0; r < R; ++r) {
    const float* x = logits.f32() + r * V;
    int32_t best = 0;
    bool bad = false;
    for (int64_t i = 0; i < V; ++i) {
      if (std::isnan(x[i]) || x[i] == std::numeric_limits<float>::infinity()) bad = true;
      if (x[i] > x[best]) best = int32_t(i);
    }
    ids.data<int32_t>()[r] = bad ? 0 : best;
  }
}

Tensor CpuBackend::linear(const Tensor& x, const LinearWeight& w) {
  int64_t T = x.dim(0), K = x.row_size();
  DS_CHECK(K == w.in_features, "linear: input has {} features, weight expects {}", K, w.in_features);
  Tensor y = Tensor::empty({T, w.out_features}, DType::F32);
  gemm_xwt(x.f32(), w.w.f32(), y.f32(), T, w.out_features, K);
  return y;
}

namespace {
void rmsnorm_row(const float* x, const float* w, float* y, int64_t n, float eps) {
  float ss = dot(x, x, n);
  float r = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
}
}  // namespace

Tensor CpuBackend::rmsnorm(const Tensor& x, const Tensor& w, float eps) {
  int64_t T = x.dim(0), n = x.row_size();
  DS_CHECK(w.numel() == n, "rmsnorm: weight has {} elements, rows have {}", w.numel(), n);
  Tensor y = Tensor::empty({T, n}, DType::F32);
#pragma omp parallel for if (T > 16)
  for (int64_t t = 0; t < T; ++t) rmsnorm_row(x.f32() + t * n, w.f32(), y.f32() + t * n, n, eps);
  return y;
}

Tensor CpuBackend::add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) {
  add_inplace(residual, x);
  return rmsnorm(residual, w, eps);
}

Tensor CpuBackend::layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  int64_t T = x.dim(0), n = x.row_size();
  Tensor y = Tensor::empty({T, n}, DType::F32);
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x.f32() + t * n;
    float* yr = y.f32() + t * n;
    float mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += xr[i];
    mean /= float(n);
    for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    float r = 1.0f / std::sqrt(var / float(n) + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * r * w.f32()[i] + b.f32()[i];
  }
  return y;
}

void CpuBackend::add_inplace(Tensor& y, const Tensor& x) {
  DS_CHECK(y.numel() == x.numel(), "add: {} vs {}", y.describe(), x.describe());
  float* yp = y.f32();
  const float* xp = x.f32();
  int64_t n = y.numel();
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) yp[i] += xp[i];
}

void CpuBackend::scale_inplace(Tensor& y, float s) {
  float* p = y.f32();
  for (int64_t i = 0, n = y.numel(); i < n; ++i) p[i] *= s;
}

void CpuBackend::rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
                      const std::vector<int32_t>& pos, const RopeTable& table, RopeLayout layout) {
  int64_t T = x.dim(0), row = x.row_size(), half = rot_dim / 2;
  DS_CHECK(int64_t(pos.size()) == T && int64_t(table.inv_freq.size()) == half, "rope: bad positions or table");
  DS_CHECK(col0 + (nheads - 1) * head_stride + rot_dim <= row, "rope: heads exceed the row of {}", x.describe());
#pragma omp parallel for if (T > 16)
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> c(half), s(half);
    for (int64_t i = 0; i < half; ++i) {
      float angle = table.inv_freq[i] * float(pos[t]);  // fp32 angle, as the references compute it
      c[i] = std::cos(angle) * table.attention_factor;
      s[i] = std::sin(angle) * table.attention_factor;
    }
    for (int64_t h = 0; h < nheads; ++h) {
      float* v = x.f32() + t * row + col0 + h * head_stride;
      for (int64_t i = 0; i < half; ++i) {
        int64_t a = layout == RopeLayout::Interleaved ? 2 * i : i;
        int64_t b = layout == RopeLayout::Interleaved ? 2 * i + 1 : i + half;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * c[i] - x1 * s[i];
        v[b] = x1 * c[i] + x0 * s[i];
      }
    }
  }
}

Tensor CpuBackend::silu_mul(const Tensor& gate, const Tensor& up) {
  DS_CHECK(gate.numel() == up.numel(), "silu_mul: {} vs {}", gate.describe(), up.describe());
  Tensor y = Tensor::empty(gate.shape(), DType::F32);
  int64_t n = gate.numel();
  const float *g = gate.f32(), *u = up.f32();
  float* o = y.f32();
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  return y;
}

void CpuBackend::copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) {
  int64_t T = src.dim(0), ds = dst.row_size(), ss = src.row_size();
  DS_CHECK(dst.dim(0) == T && dst_col0 + ncols <= ds && src_col0 + ncols <= ss && dst.dtype() == src.dtype() &&
               dtype_size(src.dtype()) == 4,
           "copy_cols: {} <- {}", dst.describe(), src.describe());
  // Any 4-byte element (activations, or I32 token ids of a draft chain).
  auto* d = static_cast<char*>(dst.raw());
  const auto* s = static_cast<const char*>(src.raw());
  for (int64_t t = 0; t < T; ++t) std::memcpy(d + (t * ds + dst_col0) * 4, s + (t * ss + src_col0) * 4, size_t(ncols) * 4);
}

void CpuBackend::cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) {
  int64_t D = pool.row_size(), n = rows.row_size();
  DS_CHECK(int64_t(slots.size()) == rows.dim(0) && col0 + n <= D, "cache_write: {} rows into {}",
           rows.describe(), pool.describe());
  for (size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] == -1) continue;  // a padding row: nothing to keep
    DS_CHECK(slots[t] >= 0 && slots[t] < pool.dim(0), "cache slot {} outside the pool of {}", slots[t], pool.dim(0));
    std::memcpy(pool.f32() + int64_t(slots[t]) * D + col0, rows.f32() + t * n, n * sizeof(float));
  }
}

Tensor CpuBackend::cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) {
  int64_t D = pool.row_size();
  Tensor out = Tensor::empty({int64_t(slots.size()), D}, DType::F32);
  for (size_t i = 0; i < slots.size(); ++i)
    std::memcpy(out.f32() + i * D, pool.f32() + int64_t(slots[i]) * D, D * sizeof(float));
  return out;
}

std::unique_ptr<Backend> make_cpu_backend_impl(int num_threads) { return std::make_unique<CpuBackend>(num_threads); }

}  // namespace ds::backend::cpu

namespace ds::backend {
std::unique_ptr<Backend> make_cpu_backend(int num_threads) { return cpu::make_cpu_backend_impl(num_threads); }
}  // namespace ds::backend
