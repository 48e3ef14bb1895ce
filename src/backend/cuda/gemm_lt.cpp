#include "backend/cuda/gemm_lt.h"

#include "backend/cuda/cuda_check.h"

#define DS_LT_CHECK(call)                                                                                 \
  do {                                                                                                    \
    cublasStatus_t st_ = (call);                                                                          \
    if (st_ != CUBLAS_STATUS_SUCCESS) ::ds::fail("cuBLASLt error {} in {} ({}:{})", int(st_), #call, __FILE__, __LINE__); \
  } while (0)

namespace ds::backend::cuda {

namespace {
enum Kind { kFp8 = 0, kBf16 = 1 };
}

LtGemm::LtGemm() {
  DS_LT_CHECK(cublasLtCreate(&handle_));
  DS_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

LtGemm::~LtGemm() {
  for (auto& [k, p] : plans_) {
    if (p.d) cublasLtMatrixLayoutDestroy(p.d);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

LtGemm::Plan& LtGemm::plan(int kind, int M, int N, int K, bool y_f32) {
  auto key = std::make_tuple(kind, M, N, K, y_f32);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Plan& p = plans_[key];
  DS_LT_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)));
  DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)));
  const cudaDataType_t in = kind == kFp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  if (kind == kFp8) {
    const int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a_mode, sizeof(a_mode)));
    DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b_mode, sizeof(b_mode)));
    // Scale pointers must be set for the heuristic to see a block-scaled problem; real ones come per call.
    const void* dummy = workspace_;
    DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &dummy, sizeof(dummy)));
    DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &dummy, sizeof(dummy)));
  }
  DS_LT_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, uint64_t(K), uint64_t(N), int64_t(K)));
  DS_LT_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, uint64_t(K), uint64_t(M), int64_t(K)));
  DS_LT_CHECK(cublasLtMatrixLayoutCreate(&p.d, y_f32 ? CUDA_R_32F : CUDA_R_16BF, uint64_t(N), uint64_t(M), int64_t(N)));
  cublasLtMatmulPreference_t pref = nullptr;
  DS_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes_;
  DS_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  cublasLtMatmulHeuristicResult_t res{};
  int n = 0;
  const cublasStatus_t hs =
      cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.d, p.d, pref, 1, &res, &n);
  cublasLtMatmulPreferenceDestroy(pref);
  p.ok = hs == CUBLAS_STATUS_SUCCESS && n > 0;
  if (p.ok) p.algo = res.algo;
  return p;
}

bool LtGemm::fp8(const uint8_t* w, const float* w_scale, const uint8_t* xq, const float* x_scale, void* y, bool y_f32,
                 int M, int N, int K, cudaStream_t st) {
  Plan& p = plan(kFp8, M, N, K, y_f32);
  if (!p.ok) return false;
  DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scale, sizeof(w_scale)));
  DS_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scale, sizeof(x_scale)));
  return matmul(p, w, xq, y, st);
}

bool LtGemm::bf16(const uint16_t* w, const uint16_t* x, float* y, int M, int N, int K, cudaStream_t st) {
  Plan& p = plan(kBf16, M, N, K, true);
  if (!p.ok) return false;
  return matmul(p, w, x, y, st);
}

bool LtGemm::matmul(Plan& p, const void* w, const void* x, void* y, cudaStream_t st) {
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t s = cublasLtMatmul(handle_, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo,
                                          workspace_, workspace_bytes_, st);
  if (s != CUBLAS_STATUS_SUCCESS) p.ok = false;
  return p.ok;
}

}  // namespace ds::backend::cuda
