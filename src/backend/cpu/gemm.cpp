// Register-tiled fp32 GEMM: 4 rows of x against 2 rows of W, 8-wide vectors along K.
// Both operands are K-contiguous (nn.Linear layout), so every inner loop is two streaming loads.
// Built twice (AVX2+FMA and baseline) through target_clones; the loader picks at run time.
#include "backend/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace ds::backend::cpu {

namespace {
typedef float v8 __attribute__((vector_size(32)));

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline float hsum(v8 v) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

#define DS_SIMD_CLONES __attribute__((target_clones("arch=haswell", "default")))

// Computes an mr x nr (mr <= 4, nr <= 2) tile of y.
DS_SIMD_CLONES
void tile(const float* x, const float* w, float* y, int64_t mr, int64_t nr, int64_t N, int64_t K) {
  v8 acc[4][2] = {};
  int64_t k8 = K / 8 * 8;
  if (mr == 4 && nr == 2) {
    for (int64_t k = 0; k < k8; k += 8) {
      v8 w0 = load8(w + k), w1 = load8(w + K + k);
      for (int i = 0; i < 4; ++i) {
        v8 xi = load8(x + i * K + k);
        acc[i][0] += xi * w0;
        acc[i][1] += xi * w1;
      }
    }
  } else {
    for (int64_t k = 0; k < k8; k += 8)
      for (int64_t j = 0; j < nr; ++j) {
        v8 wj = load8(w + j * K + k);
        for (int64_t i = 0; i < mr; ++i) acc[i][j] += load8(x + i * K + k) * wj;
      }
  }
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t k = k8; k < K; ++k) s += x[i * K + k] * w[j * K + k];
      y[i * N + j] = s;
    }
}
}  // namespace

DS_SIMD_CLONES
float dot(const float* a, const float* b, int64_t n) {
  v8 acc0 = {}, acc1 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 += load8(a + i) * load8(b + i);
    acc1 += load8(a + i + 8) * load8(b + i + 8);
  }
  for (; i + 8 <= n; i += 8) acc0 += load8(a + i) * load8(b + i);
  float s = hsum(acc0 + acc1);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

DS_SIMD_CLONES
void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void gemm_xwt_serial(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  for (int64_t m = 0; m < M; m += 4) {
    const int64_t mr = std::min<int64_t>(4, M - m);
    for (int64_t n = 0; n < N; n += 2) tile(x + m * K, w + n * K, y + m * N + n, mr, std::min<int64_t>(2, N - n), N, K);
  }
}

void gemm_xwt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  // Work is split over blocks of W rows so each thread streams its own slice of the weight once per
  // 4-row strip of x (W is the large operand at decode sizes).
  const int64_t NB = 64;
  int64_t nblocks = (N + NB - 1) / NB;
#pragma omp parallel for schedule(dynamic, 1) if (M * N * K > 32768)
  for (int64_t b = 0; b < nblocks; ++b) {
    int64_t n0 = b * NB, n1 = std::min(N, n0 + NB);
    for (int64_t m = 0; m < M; m += 4) {
      int64_t mr = std::min<int64_t>(4, M - m);
      for (int64_t n = n0; n < n1; n += 2) {
        int64_t nr = std::min<int64_t>(2, n1 - n);
        tile(x + m * K, w + n * K, y + m * N + n, mr, nr, N, K);
      }
    }
  }
}

}  // namespace ds::backend::cpu
