// CudaBackend: linear layers (the GEMM dispatch), MLA weight absorption.
#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_batched.h"
#include "backend/cuda/gemm_lt.h"
#include "tensor/dtype.h"
#include "util/log.h"

namespace ds::backend::cuda {

WeightRef CudaBackend::weight_ref(const LinearWeight& w) {
  DS_CHECK(w.defined() && w.w.device() == Device::CUDA, "linear weight is not on the GPU");
  WeightRef r;
  r.data = w.w.raw();
  r.rows = int(w.out_features);
  r.cols = int(w.in_features);
  switch (w.w.dtype()) {
    case DType::F8_E4M3:
      r.type = WType::FP8;
      DS_CHECK(w.scale.defined(), "FP8 weight without scales");
      r.scale = w.scale.data<float>();
      r.scale_pitch = int(w.scale.dim(1));
      break;
    case DType::BF16: r.type = WType::BF16; break;
    case DType::F32: r.type = WType::F32; break;
    default: fail("linear weight of dtype {} is not supported", dtype_name(w.w.dtype()));
  }
  return r;
}

void CudaBackend::linear_gemv(const Tensor& x, const LinearWeight& w, Tensor& y) {
  const WeightRef r = weight_ref(w);
  const int M = int(x.dim(0));
  DS_CHECK(M <= gemv_max_m(r) && gemv_supported(r), "gemv: M = {} / weight {} x {} not supported", M, r.rows, r.cols);
  GemvTile tile = gemv_tile(r, M);
  if (M <= 8 && r.type != WType::F32 && fast(kFastTf32Gemv)) tile.mode |= 16;
  const int ky = gemv_ksplit(r, M, num_sms_, tile);
  Tensor partial;
  if (ky > 1) partial = empty({int64_t(ky) * M * r.rows}, DType::F32);
  launch_gemv(x.data<float>(), M, r, y.data<float>(), ky > 1 ? partial.data<float>() : nullptr,
              gemv_counters_.data<int32_t>(), ky, stream_, tile);
  check_launch("gemv");
  last_gemm_path_ = (tile.mode & 16) ? "gemv-tf32" : "gemv";
}

// The group in one GEMV launch where linear() would take the GEMV for each weight and the weights share a
// tile (gemv_groupable); otherwise one linear() per weight.
std::vector<Tensor> CudaBackend::linear_group(const Tensor& x, const std::vector<const LinearWeight*>& ws) {
  const int64_t T = x.dim(0), K = x.row_size();
  GemvGroup g;
  bool one_launch = opts_.gemv_group && ws.size() >= 2 && ws.size() <= size_t(kGemvMaxGroup) && T > 0 && x.device() == Device::CUDA &&
                    x.dtype() == DType::F32;
  for (size_t i = 0; one_launch && i < ws.size(); ++i) {
    one_launch = ws[i]->in_features == K && ws[i]->out_features > 0;
    if (one_launch) g.w[g.count++] = weight_ref(*ws[i]);
  }
  if (one_launch) {
    const WeightRef& r = g.w[0];
    const bool to_lt = fast(r.type == WType::FP8 ? kFastFp8Act : kFastBf16Gemm);
    const int64_t gemv_limit = to_lt ? std::min(8, gemv_max_m(r)) : gemv_max_m(r);
    one_launch = T <= gemv_limit && gemv_groupable(g, int(T));
  }
  if (!one_launch) return Backend::linear_group(x, ws);
  const int M = int(T);
  GemvTile tile = gemv_tile(g.w[0], M);
  if (M <= 8 && fast(kFastTf32Gemv)) tile.mode |= 16;  // as linear_gemv
  const int ky = gemv_ksplit(g, M, num_sms_, tile);
  std::vector<Tensor> ys;
  int64_t partial_floats = 0;
  for (int i = 0; i < g.count; ++i) {
    ys.push_back(empty({T, int64_t(g.w[i].rows)}, DType::F32));
    g.y[i] = ys.back().data<float>();
    partial_floats += int64_t(ky) * M * g.w[i].rows;
  }
  Tensor partial;
  if (ky > 1) partial = empty({partial_floats}, DType::F32);
  launch_gemv_group(x.data<float>(), M, g, ky > 1 ? partial.data<float>() : nullptr, gemv_counters_.data<int32_t>(),
                    ky, stream_, tile);
  check_launch("gemv group");
  last_gemm_path_ = (tile.mode & 16) ? "gemv-group-tf32" : "gemv-group";
  return ys;
}

void CudaBackend::linear_simt(const Tensor& x, const LinearWeight& w, Tensor& y) {
  const WeightRef r = weight_ref(w);
  GemmArgs g;
  g.a = x.data<float>();
  g.lda = r.cols;
  g.c = y.data<float>();
  g.ldc = r.rows;
  g.M = int(x.dim(0));
  g.N = r.rows;
  g.K = r.cols;
  g.trans_w = true;
  launch_gemm_simt(g, r, stream_);
  check_launch("gemm_simt");
  last_gemm_path_ = "simt";
}

bool CudaBackend::lt_fp8_usable(const WeightRef& r) const {
  const int kb = r.cols / 128;
  return r.type == WType::FP8 && r.cols % 128 == 0 && r.rows % 16 == 0 && r.scale_pitch == (kb + 3) / 4 * 4 &&
         (kb % 4 == 0 || fp8_lt_any_kb_);
}

// Activations quantised per token per 128 columns (ue8m0 scales), then cuBLASLt's block-scaled FP8 GEMM.
// Tokens are padded to a multiple of 16 (zero rows), which every FP8 kernel of cuBLASLt accepts.
Tensor CudaBackend::run_fp8_lt(const Tensor& x, const WeightRef& r, bool m_fastest, bool out_f32, Tensor* dq) {
  const int M = int(x.dim(0)), N = r.rows, K = r.cols, kb = K / 128, Mp = (M + 15) / 16 * 16;
  const int pitch = m_fastest ? Mp : (kb + 3) / 4 * 4;
  Tensor xq = empty({int64_t(Mp), int64_t(K)}, DType::F8_E4M3);
  Tensor xs = empty({int64_t(m_fastest ? kb : Mp), int64_t(pitch)}, DType::F32);
  if (!m_fastest && pitch > kb) DS_CUDA_CHECK(cudaMemsetAsync(xs.raw(), 0, xs.nbytes(), stream_));
  launch_quant_fp8_act(x.data<float>(), M, Mp, K, xq.data<uint8_t>(), xs.data<float>(), pitch, m_fastest,
                       dq ? dq->data<float>() : nullptr, stream_);
  check_launch("quant_fp8_act");
  Tensor y;
  bool ok;
  if (out_f32) {
    Tensor full = empty({int64_t(Mp), int64_t(N)}, DType::F32);
    ok = lt_->fp8(static_cast<const uint8_t*>(r.data), r.scale, xq.data<uint8_t>(), xs.data<float>(), full.raw(), true,
                  Mp, N, K, stream_);
    y = full.rows(0, M);
  } else {
    Tensor yb = empty({int64_t(Mp), int64_t(N)}, DType::BF16);
    ok = lt_->fp8(static_cast<const uint8_t*>(r.data), r.scale, xq.data<uint8_t>(), xs.data<float>(), yb.raw(), false,
                  Mp, N, K, stream_);
    y = empty({int64_t(M), int64_t(N)}, DType::F32);
    if (ok) launch_bf16_to_f32(yb.data<uint16_t>(), y.data<float>(), size_t(M) * N, stream_);
  }
  check_launch("cublasLt fp8");
  return ok ? y : Tensor();
}

Tensor CudaBackend::linear_fp8_lt(const Tensor& x, const LinearWeight& w) {
  const WeightRef r = weight_ref(w);
  if (r.type != WType::FP8) return Tensor();
  if (!fp8_lt_probed_) probe_fp8_lt();
  if (!fp8_lt_ok_ || !lt_fp8_usable(r)) return Tensor();
  if (opts_.emulate_fp8_lt) {  // the same FP8 activations, our fp32 GEMM
    const int M = int(x.dim(0)), K = r.cols, kb = K / 128;
    Tensor xq = empty({M, K}, DType::F8_E4M3), xs = empty({kb, M}, DType::F32), dq = empty({M, K}, DType::F32);
    launch_quant_fp8_act(x.data<float>(), M, M, K, xq.data<uint8_t>(), xs.data<float>(), M, true, dq.data<float>(),
                         stream_);
    check_launch("quant_fp8_act");
    Tensor y = empty({M, int64_t(r.rows)}, DType::F32);
    linear_simt(dq, w, y);
    last_gemm_path_ = "emulated-fp8";
    return y;
  }
  Tensor y = run_fp8_lt(x, r, fp8_lt_m_fastest_, fp8_lt_out_f32_, nullptr);
  if (y.defined()) last_gemm_path_ = "lt-fp8";
  return y;
}

// Finds, once, the activation-scale layout and output type under which cuBLASLt's block-scaled FP8 GEMM
// reproduces our own GEMM on the same FP8-rounded activations (the scale layouts are easy to get wrong;
// a wrong one is off by ~100%, a right one by rounding only), then whether K-block counts that are no
// multiple of 4 work with scale rows padded to 4. Nothing working: FP8 GEMMs stay ours.
void CudaBackend::probe_fp8_lt() {
  fp8_lt_probed_ = true;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_int_distribution<int> ex(-4, 4);
  auto trial = [&](int M, int N, int K, bool m_fastest, bool out_f32) -> double {
    std::vector<uint8_t> wq(static_cast<size_t>(N) * K);
    for (auto& v : wq) v = f32_to_fp8e4m3(nd(rng) * 50.f);
    const int nb = (N + 127) / 128, kb = K / 128;
    std::vector<uint16_t> ws(static_cast<size_t>(nb) * kb);
    for (auto& v : ws) v = f32_to_bf16(std::ldexp(1.0f, ex(rng)) * 1e-2f);
    HostTensor hw{"probe", DType::F8_E4M3, {N, K}, wq.data()}, hs{"probe_scale", DType::BF16, {nb, kb}, ws.data()};
    LinearWeight w = load_linear(hw, &hs);
    Tensor xt = Tensor::empty({M, K}, DType::F32);
    for (int m = 0; m < M; ++m)
      for (int k = 0; k < K; ++k) xt.f32()[int64_t(m) * K + k] = nd(rng) * std::ldexp(1.0f, ex(rng) + (m + k / 128) % 5);
    Tensor x = from_host(xt), dq = empty({M, K}, DType::F32), ref = empty({M, N}, DType::F32);
    Tensor y = run_fp8_lt(x, weight_ref(w), m_fastest, out_f32, &dq);
    if (!y.defined()) return INFINITY;
    linear_simt(dq, w, ref);
    Tensor a = to_host(y), b = to_host(ref);
    double e2 = 0, r2 = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double d = double(a.f32()[i]) - b.f32()[i];
      e2 += d * d;
      r2 += double(b.f32()[i]) * b.f32()[i];
    }
    const double err = std::sqrt(e2 / r2);
    return std::isnan(err) ? INFINITY : err;
  };
  for (bool m_fastest : {true, false})
    for (bool out_f32 : {true, false}) {
      const double err = trial(20, 256, 512, m_fastest, out_f32);
      spdlog::debug("cuBLASLt FP8 probe: scales {}, out {}: rel err {:.2e}", m_fastest ? "token-fastest" : "block-fastest",
                    out_f32 ? "f32" : "bf16", err);
      if (err < 1e-2) {
        fp8_lt_ok_ = true;
        fp8_lt_m_fastest_ = m_fastest;
        fp8_lt_out_f32_ = out_f32;
        const double err_kb1 = trial(7, 384, 128, m_fastest, out_f32);  // 1 K block: scale rows padded to 4
        fp8_lt_any_kb_ = err_kb1 < 1e-2;
        fp8_lt_config_ = fmt::format("activation scales {}, output {}, probe rel err {:.1e}; K blocks % 4 != 0 {}",
                                     m_fastest ? "token-fastest" : "block-fastest", out_f32 ? "f32" : "bf16", err,
                                     fp8_lt_any_kb_ ? "ok" : fmt::format("off (err {:.1e})", err_kb1));
        spdlog::info("cuBLASLt FP8 block-scaled GEMM: {}", fp8_lt_config_);
        return;
      }
    }
  fp8_lt_config_ = "off";
  spdlog::warn("cuBLASLt FP8 block-scaled GEMM unavailable or wrong here: FP8 GEMMs use the SIMT kernel");
}

Tensor CudaBackend::linear(const Tensor& x, const LinearWeight& w) {
  const int64_t T = x.dim(0), K = x.row_size();
  DS_CHECK(K == w.in_features, "linear: input has {} features, weight expects {}", K, w.in_features);
  DS_CHECK(x.device() == Device::CUDA && x.dtype() == DType::F32, "linear: input is {}", x.describe());
  if (T == 0 || w.out_features == 0) return empty({T, w.out_features}, DType::F32);
  const WeightRef r = weight_ref(w);
  // The fp32-accurate tensor-core GEMV serves decode sizes; in the fast mode cuBLASLt takes over above 8
  // tokens, where it is faster (docs/PERF.md).
  const bool to_lt = fast(r.type == WType::FP8 ? kFastFp8Act : kFastBf16Gemm);
  const int64_t gemv_limit = to_lt ? std::min(8, gemv_max_m(r)) : gemv_max_m(r);
  if (T <= gemv_limit && gemv_supported(r)) {
    Tensor y = empty({T, w.out_features}, DType::F32);
    linear_gemv(x, w, y);
    return y;
  }
  // Small BF16/fp32 outputs (the indexer's head weights: DeepSeek computes them in fp32, so not on
  // cuBLASLt) at decode batch sizes: the GEMV over chunks of rows, re-reading a weight of < 256 rows
  // from L2, instead of the SIMT GEMM (0.57 ms per layer at 32-128 tokens: docs/PERF.md section 4).
  constexpr int64_t kChunkedGemvMaxTokens = 256;  // beyond, the launches cost more than the SIMT GEMM
  if (r.type != WType::FP8 && r.rows < 256 && T <= kChunkedGemvMaxTokens && gemv_supported(r)) {
    Tensor y = empty({T, w.out_features}, DType::F32);
    const int64_t chunk = gemv_max_m(r);
    for (int64_t m0 = 0; m0 < T; m0 += chunk) {
      const int64_t m1 = std::min(T, m0 + chunk);
      Tensor ys = y.rows(m0, m1);
      linear_gemv(x.rows(m0, m1), w, ys);
    }
    return y;
  }
  if (to_lt) {
    if (r.type == WType::FP8) {
      Tensor y = linear_fp8_lt(x, w);
      if (y.defined()) return y;
    }
    // BF16 weights: bf16 activations into cuBLASLt, except small outputs (the router, the indexer's head
    // weights), which DeepSeek computes in fp32.
    if (r.type == WType::BF16 && r.rows >= 256 && K % 8 == 0 && r.rows % 8 == 0) {
      Tensor xb = empty({T, K}, DType::BF16), y = empty({T, w.out_features}, DType::F32);
      launch_f32_to_bf16(x.data<float>(), xb.data<uint16_t>(), size_t(T * K), stream_);
      check_launch("f32_to_bf16");
      if (lt_->bf16(static_cast<const uint16_t*>(r.data), xb.data<uint16_t>(), y.data<float>(), int(T), r.rows, int(K),
                    stream_)) {
        check_launch("cublasLt bf16");
        last_gemm_path_ = "lt-bf16";
        return y;
      }
    }
  }
  // Small BF16/fp32 outputs of many tokens (the indexer's head weights in a prefill chunk: 64 rows x 7168, which
  // the SIMT GEMM took ~0.7 ms a layer for at 8K tokens): cuBLAS's fp32 GEMM (fp32 products and sums, like the
  // SIMT kernel's, in another order) on the weight made fp32 (a 1.8 MB pass for those). The exact mode keeps
  // its own kernel.
  if (opts_.gemm == GemmMode::Fast && r.type != WType::FP8) {
    if (!batched_) batched_ = std::make_unique<BatchedGemm>();
    Tensor wf;
    const float* wp = static_cast<const float*>(r.data);
    if (r.type != WType::F32) {
      wf = empty({int64_t(r.rows), int64_t(r.cols)}, DType::F32);
      launch_dequant_rows(r, 0, r.rows, wf.data<float>(), stream_);
      wp = wf.data<float>();
    }
    Tensor y = empty({T, w.out_features}, DType::F32);
    // Row-major y [T, N] = x [T, K] . W^T is column-major y^T [N, T] = W . x^T: cuBLAS's A the weight (rows of
    // K floats, transposed), its B the activations.
    batched_->f32(true, int(w.out_features), int(T), int(K), wp, int(K), x.data<float>(), int(K), y.data<float>(),
                  int(w.out_features), stream_);
    last_gemm_path_ = "cublas-f32";
    return y;
  }
  Tensor y = empty({T, w.out_features}, DType::F32);
  linear_simt(x, w, y);
  return y;
}

// ---------------------------------------------------------------- MLA weight absorption

// The MLA absorptions as batched products over the heads (GemmArgs semantics, k_gemm.cu): up to 8 tokens
// the head-batched GEMV (FP8), in the fast mode from kAbsorbBatchedMinTokens tokens kv_b dequantised to
// fp32 (one pass over the weight) and one cuBLAS strided-batched TF32 GEMM (activations rounded to TF32:
// fast-mode numerics, as its FP8 GEMMs; the SIMT GEMM took 7 ms per layer at 8192 tokens), else the SIMT GEMM.
void CudaBackend::absorb(const GemmArgs& g, const LinearWeight& kv_b) {
  const WeightRef w = weight_ref(kv_b);
  if (launch_head_gemv(g, w, stream_)) return;
  if (fast(kFastTf32Absorb) && g.M >= kAbsorbBatchedMinTokens) {
    if (!batched_) batched_ = std::make_unique<BatchedGemm>();
    Tensor wf = empty({int64_t(w.rows), int64_t(w.cols)}, DType::F32);
    launch_dequant_rows(w, 0, w.rows, wf.data<float>(), stream_);
    // Row-major C = A . Wv is column-major C^T = Wv^T . A^T: cuBLAS's A is the weight slice (rows of
    // w.cols floats; transposed when Wv(k, n) = W[n, k]), its B the activations.
    batched_->tf32(g.trans_w, g.N, g.M, g.K, wf.data<float>() + int64_t(g.w_row0) * w.cols, w.cols,
                   int64_t(g.w_row_bstride) * w.cols, g.a, g.lda, g.a_bstride, g.c, g.ldc, g.c_bstride, g.batch,
                   stream_);
    last_absorb_path_ = "tf32-batched";
    return;
  }
  launch_gemm_simt(g, w, stream_);
  last_absorb_path_ = "simt";
}

Tensor CudaBackend::absorb_q_nope(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                  int64_t v_dim) {
  const int64_t T = q.dim(0), qd = q.row_size() / heads, rope_dim = qd - nope_dim, Dl = kv_b.in_features;
  DS_CHECK(kv_b.out_features == heads * (nope_dim + v_dim), "kv_b_proj has {} rows, expected {}", kv_b.out_features,
           heads * (nope_dim + v_dim));
  DS_CHECK(q.device() == Device::CUDA && q.dtype() == DType::F32, "mla_absorb_q: q is {}", q.describe());
  Tensor out = empty({T, heads, Dl + rope_dim}, DType::F32);
  if (T == 0) return out;
  GemmArgs g;  // per head h: out[:, h, :Dl] = q[:, h, :Dn] . W_UK[h]   (W_UK[h] = kv_b rows h*(Dn+Dv) + [0, Dn))
  g.a = q.data<float>();
  g.a_bstride = qd;
  g.lda = int(heads * qd);
  g.c = out.data<float>();
  g.c_bstride = Dl + rope_dim;
  g.ldc = int(heads * (Dl + rope_dim));
  g.M = int(T);
  g.N = int(Dl);
  g.K = int(nope_dim);
  g.batch = int(heads);
  g.w_row0 = 0;
  g.w_row_bstride = int(nope_dim + v_dim);
  g.trans_w = false;
  absorb(g, kv_b);
  check_launch("mla_absorb_q");
  return out;
}

Tensor CudaBackend::mla_absorb_q(const Tensor& q, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                 int64_t v_dim) {
  Tensor out = absorb_q_nope(q, kv_b, heads, nope_dim, v_dim);
  const int64_t T = q.dim(0), qd = q.row_size() / heads, rope_dim = qd - nope_dim, Dl = kv_b.in_features;
  if (T > 0 && rope_dim > 0)
    DS_CUDA_CHECK(cudaMemcpy2DAsync(out.data<float>() + Dl, size_t(Dl + rope_dim) * 4, q.data<float>() + nope_dim,
                                    size_t(qd) * 4, size_t(rope_dim) * 4, size_t(T * heads), cudaMemcpyDeviceToDevice,
                                    stream_));
  return out;
}

// ---------------------------------------------------------------- the bf16 absorptions (kFastBf16Absorb)

bool CudaBackend::bf16_absorb(int64_t T) const { return fast(kFastBf16Absorb) && T >= kAbsorbBatchedMinTokens; }

Tensor CudaBackend::kv_b_bf16(const LinearWeight& kv_b) {
  const WeightRef w = weight_ref(kv_b);
  Tensor wb = empty({int64_t(w.rows), int64_t(w.cols)}, DType::BF16);
  launch_dequant_rows_bf16(w, 0, w.rows, wb.data<uint16_t>(), stream_);
  if (!batched_) batched_ = std::make_unique<BatchedGemm>();
  return wb;
}

Tensor CudaBackend::mla_absorb_out(const Tensor& o_lat, const LinearWeight& kv_b, int64_t heads, int64_t nope_dim,
                                   int64_t v_dim) {
  const int64_t T = o_lat.dim(0), Dl = kv_b.in_features;
  DS_CHECK(o_lat.row_size() == heads * Dl && (o_lat.dtype() == DType::F32 || o_lat.dtype() == DType::BF16),
           "mla_absorb_out: o_lat is {}", o_lat.describe());
  Tensor out = empty({T, heads * v_dim}, DType::F32);
  if (T == 0) return out;
  if (o_lat.dtype() == DType::BF16) {  // the bf16 attention's output: out[:, h, :] = o_lat[:, h, :] . W_UV[h]^T
    DS_CHECK(kv_b.out_features == heads * (nope_dim + v_dim), "kv_b_proj has {} rows, expected {}",
             kv_b.out_features, heads * (nope_dim + v_dim));
    const Tensor wb = kv_b_bf16(kv_b);
    batched_->bf16(true, int(v_dim), int(T), int(Dl), wb.data<uint16_t>() + nope_dim * Dl, int(Dl),
                   (nope_dim + v_dim) * Dl, o_lat.data<uint16_t>(), int(heads * Dl), Dl, out.raw(), false,
                   int(heads * v_dim), v_dim, int(heads), stream_);
    last_absorb_path_ = "bf16-batched";
    check_launch("mla_absorb_out (bf16)");
    return out;
  }
  GemmArgs g;  // per head h: out[:, h*Dv : (h+1)*Dv] = o_lat[:, h, :] . W_UV[h]^T
  g.a = o_lat.data<float>();
  g.a_bstride = Dl;
  g.lda = int(heads * Dl);
  g.c = out.data<float>();
  g.c_bstride = v_dim;
  g.ldc = int(heads * v_dim);
  g.M = int(T);
  g.N = int(v_dim);
  g.K = int(Dl);
  g.batch = int(heads);
  g.w_row0 = int(nope_dim);
  g.w_row_bstride = int(nope_dim + v_dim);
  g.trans_w = true;
  absorb(g, kv_b);
  check_launch("mla_absorb_out");
  return out;
}

}  // namespace ds::backend::cuda
