// cuBLASLt GEMMs of the CUDA backend (Hopper): FP8 e4m3 with DeepSeek's block scaling (weights one fp32
// scale per 128x128 block, activations one per token per 128 columns: CUBLASLT_MATMUL_MATRIX_SCALE_
// BLK128x128_32F / VEC128_32F) and BF16. Row-major y[M, N] = x[M, K] . W[N, K]^T is issued as the
// column-major D[N, M] = op(A = W)^T . B (= x): the "TN" form FP8 requires. Plans (descriptors +
// heuristic algorithm) are cached per shape.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace ds::backend::cuda {

class LtGemm {
 public:
  LtGemm();
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // y (F32 when y_f32, else BF16) [M, N]. w_scale: [ceil(N/128), pitch] with pitch % 4 == 0 (K blocks
  // fastest); x_scale: per (token, K block), in the layout the caller probed. Returns false when
  // cuBLASLt has no algorithm for this case (the caller falls back).
  bool fp8(const uint8_t* w, const float* w_scale, const uint8_t* xq, const float* x_scale, void* y, bool y_f32,
           int M, int N, int K, cudaStream_t st);
  // y F32 [M, N] = x BF16 [M, K] . W BF16 [N, K]^T, fp32 accumulation.
  bool bf16(const uint16_t* w, const uint16_t* x, float* y, int M, int N, int K, cudaStream_t st);

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool ok = false;
  };
  Plan& plan(int kind, int M, int N, int K, bool y_f32);
  // D = W^T x with the plan's algorithm; a failure marks the plan unusable (false: the caller falls back).
  bool matmul(Plan& p, const void* w, const void* x, void* y, cudaStream_t st);
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = size_t(32) << 20;
  std::map<std::tuple<int, int, int, int, bool>, Plan> plans_;
};

}  // namespace ds::backend::cuda
