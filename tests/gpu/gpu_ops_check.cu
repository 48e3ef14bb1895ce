// GPU op checks and benchmarks, run on the GPU machine by scripts/gpu-check.sh (CI has no GPU; it
// only compiles this). Each op is compared with a double-precision CPU reference on fresh random
// inputs, outputs poisoned with NaN first; then timed with CUDA events and reported against the
// device-to-device copy bandwidth measured in the same run. Exit status 1 if any check fails.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fp8_gemv.h"
#include "tensor/dtype.h"

using namespace ds;
using namespace ds::backend::cuda;

namespace {
std::mt19937 rng(20261124);

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  DS_CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
  DS_CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

struct Fp8Weight {
  int N, K;
  std::vector<uint8_t> q;
  std::vector<float> scale;
};
Fp8Weight random_weight(int N, int K) {
  Fp8Weight w{N, K, std::vector<uint8_t>(size_t(N) * K), std::vector<float>(size_t((N + 127) / 128) * ((K + 127) / 128))};
  std::normal_distribution<float> nd(0.f, 100.f);
  for (auto& v : w.q) v = f32_to_fp8e4m3(nd(rng));
  std::uniform_real_distribution<float> ud(0.5f, 2.0f);
  for (auto& s : w.scale) s = ud(rng) * 1e-3f;
  return w;
}

bool check_fp8_gemv(int M, int N, int K) {
  Fp8Weight w = random_weight(N, K);
  std::vector<uint16_t> xh(size_t(M) * K);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& v : xh) v = f32_to_bf16(nd(rng));
  auto* dx = to_device(xh);
  auto* dw = to_device(w.q);
  auto* ds = to_device(w.scale);
  std::vector<uint16_t> yh(size_t(M) * N, 0x7fc0);  // NaN poison
  auto* dy = to_device(yh);
  fp8_gemv(reinterpret_cast<__nv_bfloat16*>(dx), M, K, dw, ds, N, reinterpret_cast<__nv_bfloat16*>(dy), 0);
  DS_CUDA_CHECK(cudaDeviceSynchronize());
  DS_CUDA_CHECK(cudaMemcpy(yh.data(), dy, yh.size() * 2, cudaMemcpyDeviceToHost));
  const int sc = (K + 127) / 128;
  double err2 = 0, ref2 = 0;
  bool nan = false;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double r = 0;
      for (int k = 0; k < K; ++k)
        r += double(bf16_to_f32(xh[size_t(m) * K + k])) * fp8e4m3_to_f32(w.q[size_t(n) * K + k]) * w.scale[(n / 128) * sc + k / 128];
      double y = bf16_to_f32(yh[size_t(m) * N + n]);
      nan |= std::isnan(y);
      err2 += (y - r) * (y - r);
      ref2 += r * r;
    }
  double rel = std::sqrt(err2 / ref2);
  bool ok = !nan && rel < 5e-3;  // bf16 output rounding is ~2e-3
  std::printf("check fp8_gemv M=%d N=%d K=%d: rel err %.2e %s\n", M, N, K, rel, ok ? "PASS" : "FAIL");
  cudaFree(dx), cudaFree(dw), cudaFree(ds), cudaFree(dy);
  return ok;
}

// Device-to-device copy bandwidth (bytes read + written), the memory ceiling.
double copy_bandwidth() {
  const size_t bytes = size_t(2) << 30;
  void *a, *b;
  DS_CUDA_CHECK(cudaMalloc(&a, bytes));
  DS_CUDA_CHECK(cudaMalloc(&b, bytes));
  DS_CUDA_CHECK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(e0);
    DS_CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 2) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaFree(a), cudaFree(b);
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3);
}

// Median time of fp8_gemv over `copies` distinct weight buffers (more than L2 holds).
void bench_fp8_gemv(int M, int N, int K, double hbm) {
  const size_t wbytes = size_t(N) * K;
  const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / wbytes + 1));
  Fp8Weight w = random_weight(N, K);
  std::vector<uint8_t*> dws;
  for (int c = 0; c < copies; ++c) dws.push_back(to_device(w.q));
  auto* ds = to_device(w.scale);
  std::vector<uint16_t> xh(size_t(M) * K, f32_to_bf16(0.5f));
  auto* dx = to_device(xh);
  __nv_bfloat16* dy;
  DS_CUDA_CHECK(cudaMalloc(&dy, size_t(M) * N * 2));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int i = 0; i < 30 + 3; ++i) {
    cudaEventRecord(e0);
    fp8_gemv(reinterpret_cast<__nv_bfloat16*>(dx), M, K, dws[i % copies], ds, N, dy, 0);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 3) ms.push_back(t);
  }
  DS_CUDA_CHECK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  double t = ms[ms.size() / 2] * 1e-3;
  double bytes = double(wbytes) + w.scale.size() * 4.0 + M * K * 2.0 + M * N * 2.0;
  std::printf("bench fp8_gemv M=%d N=%6d K=%6d: %8.2f us  %7.0f GB/s  %5.1f%% of copy bandwidth\n", M, N, K, t * 1e6,
              bytes / t / 1e9, 100.0 * bytes / t / hbm);
  for (auto* p : dws) cudaFree(p);
  cudaFree(ds), cudaFree(dx), cudaFree(dy);
}
}  // namespace

int main() {
  try {
    cudaDeviceProp prop;
    DS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    bool ok = true;
    ok &= check_fp8_gemv(1, 256, 512);
    ok &= check_fp8_gemv(3, 200, 320);    // partial row and column blocks
    ok &= check_fp8_gemv(8, 576, 7168);   // kv_a_proj_with_mqa: 576 rows, last block partial
    ok &= check_fp8_gemv(5, 2112, 1536);
    double hbm = copy_bandwidth();
    std::printf("ceiling: device-to-device copy %.0f GB/s (read + write)\n", hbm / 1e9);
    const int shapes[][2] = {{2112, 7168}, {24576, 1536}, {32768, 512}, {7168, 16384}, {4096, 7168}, {7168, 2048}};
    for (int M : {1, 8})
      for (auto& s : shapes) bench_fp8_gemv(M, s[0], s[1], hbm);
    std::printf("gpu_ops_check: %s\n", ok ? "ALL PASS" : "FAILURES");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
