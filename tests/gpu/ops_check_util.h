// Shared pieces of the CUDA op checks (gpu_ops_check.cpp: dense ops, gpu_ops_check_moe.cpp: MoE,
// gpu_ops_check_attention.cpp: MLA and the lightning indexer, gpu_ops_check_moe_fp8.cpp: the FP8 expert
// path): the two backends,
// host<->device helpers, random linear weights and experts.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "check_util.h"

namespace opcheck {

using namespace ds;
using namespace ds::backend;
using namespace gpucheck;
using cuda::CudaBackend;
using cuda::GemmMode;

inline constexpr double kTolF32 = 2e-5;

inline std::unique_ptr<Backend> g_cpu;
inline std::unique_ptr<CudaBackend> g_gpu;

inline Tensor up(const Tensor& t) { return g_gpu->from_host(t); }
// A host F32 tensor rounded to bf16: the BF16 tensor and its values widened back to F32 (the CPU reference).
inline std::pair<Tensor, Tensor> bf16_pair(const Tensor& f) {
  Tensor b = Tensor::empty(f.shape(), DType::BF16), w = Tensor::empty(f.shape(), DType::F32);
  for (int64_t i = 0; i < f.numel(); ++i) {
    b.data<uint16_t>()[i] = f32_to_bf16(f.f32()[i]);
    w.f32()[i] = bf16_to_f32(b.data<uint16_t>()[i]);
  }
  return {b, w};
}
inline Tensor down(const Tensor& t) { return g_gpu->to_host_f32(t); }
inline Err cmp(const Tensor& gpu, const Tensor& cpu) { return compare(down(gpu), cpu); }

// One row of an indexer top-k (K ids) for a query at position p: the first min(topk, p + 1) ids ascending
// and within 0..p, -1 after them.
inline bool topk_row_well_formed(const int32_t* g, int64_t K, int32_t p, int64_t topk) {
  const int64_t want = std::min<int64_t>(topk, p + 1);
  for (int64_t j = 0; j < K; ++j) {
    if (j < want) {
      if (g[j] < 0 || g[j] > p || (j > 0 && g[j] <= g[j - 1])) return false;
    } else if (g[j] != -1) {
      return false;
    }
  }
  return true;
}

// A random linear weight in a checkpoint dtype; the host buffers live as long as this object.
struct HostLinear {
  std::vector<uint8_t> q;
  std::vector<uint16_t> bf;
  std::vector<float> f, s;
  HostTensor w, scale;
  bool fp8 = false;
  HostLinear(int64_t N, int64_t K, DType dt, float wscale = 1.0f) {
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<float> ud(0.5f, 2.0f);
    const float std_w = wscale / std::sqrt(float(K));
    w = HostTensor{"w", dt, {N, K}, nullptr};
    if (dt == DType::F8_E4M3) {
      fp8 = true;
      q.resize(size_t(N * K));
      for (auto& v : q) v = f32_to_fp8e4m3(nd(rng()) * 64.f);
      const int64_t nb = (N + 127) / 128, kb = (K + 127) / 128;
      s.resize(size_t(nb * kb));
      for (auto& v : s) v = ud(rng()) * std_w / 64.f;
      w.data = q.data();
      scale = HostTensor{"s", DType::F32, {nb, kb}, s.data()};
    } else if (dt == DType::BF16) {
      bf.resize(size_t(N * K));
      for (auto& v : bf) v = f32_to_bf16(nd(rng()) * std_w);
      w.data = bf.data();
    } else {
      f.resize(size_t(N * K));
      for (auto& v : f) v = nd(rng()) * std_w;
      w.data = f.data();
    }
  }
  const HostTensor* sp() const { return fp8 ? &scale : nullptr; }
};

struct BothLinear {
  HostLinear h;
  LinearWeight c, g;
  BothLinear(int64_t N, int64_t K, DType dt, float wscale = 1.0f) : h(N, K, dt, wscale) {
    c = g_cpu->load_linear(h.w, h.sp());
    g = g_gpu->load_linear(h.w, h.sp());
  }
};

// Random SwiGLU experts (gate, up [I, H], down [H, I]) loaded on both backends.
struct BothExperts {
  std::vector<std::unique_ptr<BothLinear>> ws;
  std::vector<ExpertWeights> c, g;
  BothExperts(int64_t E, int64_t H, int64_t I, DType dt) {
    for (int64_t e = 0; e < E; ++e) {
      ExpertWeights ec, eg;
      for (auto [lc, lg, N, K] : {std::tuple{&ec.gate, &eg.gate, I, H}, std::tuple{&ec.up, &eg.up, I, H},
                                  std::tuple{&ec.down, &eg.down, H, I}}) {
        ws.push_back(std::make_unique<BothLinear>(N, K, dt));
        *lc = ws.back()->c, *lg = ws.back()->g;
      }
      c.push_back(ec), g.push_back(eg);
    }
    sc = g_cpu->prepare_experts(c);
    sg = g_gpu->prepare_experts(g);
  }
  std::shared_ptr<const ExpertSet> sc, sg;  // as each backend's MoE op takes them
};

inline std::string dname(DType t) { return std::string(dtype_name(t)); }

// The checks of each file (all record() their rows).
void check_linear();
void check_norms_and_elementwise();
void check_rope_copy_cache();
void check_moe();
void check_moe_route_bitwise();  // part of check_moe
void check_moe_grouped();
void check_moe_combine();  // part of check_moe_grouped
void check_moe_ffn_shared();
void check_moe_fp8();
void check_mla();
void check_mla_wgmma();
void check_mha();
void check_indexer();
void check_indexer_tc();
void check_indexer_wgmma();  // gpu_ops_check_indexer_wgmma.cpp
void check_kv_fp8();
void check_fused_kv();  // gpu_ops_check_fused_kv.cpp
void check_bf16_absorb();  // gpu_ops_check_bf16_absorb.cpp

}  // namespace opcheck
