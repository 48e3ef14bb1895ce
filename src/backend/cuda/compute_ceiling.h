// The tensor-core ceilings prefill figures are divided by (`bench model`, gpu_bench): cuBLASLt on one
// square GEMM, BF16 and FP8 with DeepSeek's block scales (128 x 128 weights, 1 x 128 activations), measured
// in the calling process on random operands. The nominal peaks (H100/H200 SXM dense: BF16 989, FP8 1,979
// TFLOP/s) are printed beside them; a block-scaled FP8 GEMM reaches ~60-65% of that nominal figure, so the
// measured rate is what a kernel of ours can be held to.
#pragma once
#include <string>

namespace ds::backend::cuda {

struct ComputeCeiling {
  int size = 0;             // S of the S x S x S GEMMs
  double bf16_tflops = 0;   // cuBLASLt BF16, fp32 accumulation
  double fp8_tflops = 0;    // cuBLASLt FP8 e4m3, block-scaled, BF16 output; 0 when no configuration ran
  std::string describe() const;  // one line for a benchmark's header
};

// Nominal dense tensor-core peaks of an H100/H200 SXM (NVIDIA's datasheet, without sparsity).
constexpr double kNominalBf16Tflops = 989.4, kNominalFp8Tflops = 1978.9;

// On the current device: allocates ~0.6 GB for S = 8192 and frees it. Medians of 10 timed runs after
// warm-up, CUDA events on a stream of its own.
ComputeCeiling measure_compute_ceiling(int S = 8192);

}  // namespace ds::backend::cuda
