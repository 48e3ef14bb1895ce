#include "backend/cuda/gemm_batched.h"

#include "backend/cuda/cuda_check.h"
#include "util/error.h"

namespace ds::backend::cuda {

namespace {
void check(cublasStatus_t s, const char* what) {
  DS_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLAS {} failed: {}", what, cublasGetStatusString(s));
}
}  // namespace

BatchedGemm::BatchedGemm() {
  check(cublasCreate(&handle_), "create");
  DS_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
  check(cublasSetWorkspace(handle_, workspace_, kWorkspaceBytes), "set workspace");
}

BatchedGemm::~BatchedGemm() {
  if (handle_) cublasDestroy(handle_);
  if (workspace_) cudaFree(workspace_);
}

void BatchedGemm::tf32(bool trans_a, int m, int n, int k, const float* a, int lda, long long stride_a, const float* b,
                       int ldb, long long stride_b, float* c, int ldc, long long stride_c, int batch,
                       cudaStream_t st) {
  check(cublasSetStream(handle_, st), "set stream");
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasGemmStridedBatchedEx(handle_, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, a,
                                   CUDA_R_32F, lda, stride_a, b, CUDA_R_32F, ldb, stride_b, &beta, c, CUDA_R_32F, ldc,
                                   stride_c, batch, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
        "strided-batched TF32 GEMM");
}

void BatchedGemm::bf16(bool trans_a, int m, int n, int k, const uint16_t* a, int lda, long long stride_a,
                       const uint16_t* b, int ldb, long long stride_b, void* c, bool c_bf16, int ldc,
                       long long stride_c, int batch, cudaStream_t st) {
  check(cublasSetStream(handle_, st), "set stream");
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasGemmStridedBatchedEx(handle_, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, a,
                                   CUDA_R_16BF, lda, stride_a, b, CUDA_R_16BF, ldb, stride_b, &beta, c,
                                   c_bf16 ? CUDA_R_16BF : CUDA_R_32F, ldc, stride_c, batch, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
        "strided-batched BF16 GEMM");
}

void BatchedGemm::f32(bool trans_a, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c,
                      int ldc, cudaStream_t st) {
  check(cublasSetStream(handle_, st), "set stream");
  const float alpha = 1.0f, beta = 0.0f;
  check(cublasGemmEx(handle_, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, a, CUDA_R_32F, lda, b,
                     CUDA_R_32F, ldb, &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "fp32 GEMM");
}

}  // namespace ds::backend::cuda
