// cuBLAS strided-batched GEMMs on TF32 or BF16 tensor cores: the fast mode's MLA weight absorption for many
// tokens (one GEMM per head, 128 heads per call); and plain fp32 GEMMs (small-output projections of many
// tokens). Column-major, as cuBLAS.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ds::backend::cuda {

class BatchedGemm {
 public:
  BatchedGemm();  // the handle and a fixed workspace (a captured step must not allocate)
  ~BatchedGemm();
  BatchedGemm(const BatchedGemm&) = delete;
  BatchedGemm& operator=(const BatchedGemm&) = delete;

  // C_i = op(A_i) B_i for i < batch (B never transposed), fp32 in and out, TF32 products with fp32
  // accumulation. m x n results, k deep; X_i = X + i * stride_x.
  void tf32(bool trans_a, int m, int n, int k, const float* a, int lda, long long stride_a, const float* b, int ldb,
            long long stride_b, float* c, int ldc, long long stride_c, int batch, cudaStream_t st);
  // The same with bf16 A and B, fp32 accumulation, C in bf16 (c_bf16) or fp32: the bf16 MLA absorptions.
  void bf16(bool trans_a, int m, int n, int k, const uint16_t* a, int lda, long long stride_a, const uint16_t* b,
            int ldb, long long stride_b, void* c, bool c_bf16, int ldc, long long stride_c, int batch,
            cudaStream_t st);
  // The same in plain fp32 (products and sums; no TF32 rounding), one GEMM: C = op(A) B.
  void f32(bool trans_a, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
           cudaStream_t st);

 private:
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  static constexpr size_t kWorkspaceBytes = size_t(32) << 20;
};

}  // namespace ds::backend::cuda
