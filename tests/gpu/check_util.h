// Shared helpers of the GPU checks: random host tensors, error measures, a result table.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "tensor/dtype.h"

namespace gpucheck {

using ds::DType;
using ds::Tensor;

inline std::mt19937& rng() {
  static std::mt19937 r(20261124);
  return r;
}

inline void fill_randn(float* p, int64_t n, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> nd(mean, scale);
  for (int64_t i = 0; i < n; ++i) p[i] = nd(rng());
}

inline Tensor randn(std::vector<int64_t> shape, float scale = 1.0f, float mean = 0.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  fill_randn(t.f32(), t.numel(), scale, mean);
  return t;
}

// ||a - b|| / ||b|| and max |a - b| / max |b|; NaN or a shape mismatch gives infinity.
struct Err {
  double rel = INFINITY, maxrel = INFINITY;
  bool nan = false;
};
inline Err compare(const Tensor& a, const Tensor& b) {
  Err e;
  if (a.numel() != b.numel()) return e;
  double d2 = 0, r2 = 0, dmax = 0, rmax = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.f32()[i], y = b.f32()[i];
    if (std::isnan(x) || std::isnan(y)) e.nan = true;
    d2 += (x - y) * (x - y);
    r2 += y * y;
    dmax = std::max(dmax, std::fabs(x - y));
    rmax = std::max(rmax, std::fabs(y));
  }
  if (e.nan) return e;
  e.rel = r2 > 0 ? std::sqrt(d2 / r2) : std::sqrt(d2);
  e.maxrel = rmax > 0 ? dmax / rmax : dmax;
  return e;
}

struct Row {
  std::string name, detail;
  double err, tol;
  bool pass;
};
inline std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}
inline bool record(const std::string& name, const std::string& detail, double err, double tol) {
  const bool pass = std::isfinite(err) && err <= tol;
  rows().push_back({name, detail, err, tol, pass});
  std::printf("%-4s %-28s %-44s err %.3e (tol %.1e)\n", pass ? "ok" : "FAIL", name.c_str(), detail.c_str(), err, tol);
  std::fflush(stdout);
  return pass;
}
inline int summary(const char* title) {
  int fails = 0;
  for (const auto& r : rows()) fails += !r.pass;
  std::printf("\n== %s: %zu checks, %d failed ==\n", title, rows().size(), fails);
  for (const auto& r : rows())
    if (!r.pass) std::printf("   FAILED: %s %s err %.3e tol %.1e\n", r.name.c_str(), r.detail.c_str(), r.err, r.tol);
  return fails;
}

}  // namespace gpucheck
