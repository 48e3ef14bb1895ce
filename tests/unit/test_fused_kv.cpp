// The fused attention-block ops of Backend (mla_kv_write, indexer_key_write, mla_absorb_q_rope): their
// defaults, which the CPU backend uses, equal the separate ops that model/layer.cpp called before them bit
// for bit (fp32 and packed FP8 pools, padding slots, YaRN's attention factor, Hadamard + FP8 rounding).
// The CUDA kernels that override them are checked against these on the GPU (tests/gpu/gpu_ops_check).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "backend/backend.h"

using namespace ds;
using namespace ds::backend;

namespace {
std::mt19937 rng(4242);

Tensor randn(std::vector<int64_t> shape, float scale = 1.0f, float mean = 0.0f) {
  Tensor t = Tensor::empty(std::move(shape), DType::F32);
  std::normal_distribution<float> d(mean, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
  return t;
}

Tensor copy_of(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(c.raw(), t.raw(), size_t(t.numel()) * dtype_size(t.dtype()));
  return c;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), size_t(a.numel()) * dtype_size(a.dtype())) == 0;
}

// A YaRN-like table: scaled frequencies and an attention factor other than 1.
RopeTable table_for(int64_t rot_dim, float af) {
  RopeTable t;
  std::uniform_real_distribution<float> u(0.25f, 1.0f);
  for (int64_t i = 0; i < rot_dim / 2; ++i) t.inv_freq.push_back(std::pow(10000.f, -2.f * float(i) / float(rot_dim)) * u(rng));
  t.attention_factor = af;
  return t;
}

// T distinct rows of a pool of R, a few of them -1 (padding rows of a recorded step).
std::vector<int32_t> slots_for(int64_t T, int64_t R) {
  std::vector<int32_t> all(static_cast<size_t>(R));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  std::vector<int32_t> s(all.begin(), all.begin() + T);
  for (int64_t t = 2; t < T; t += 5) s[size_t(t)] = -1;
  return s;
}

std::vector<int32_t> positions(int64_t T) {
  std::vector<int32_t> p;
  for (int64_t t = 0; t < T; ++t) p.push_back(int32_t(rng() % 150000));
  return p;
}

// A pool as the KV cache allocates it (fp32 rows, or packed FP8 rows), with random contents so that
// a write to a wrong row or column shows.
Tensor pool_for(int64_t R, int64_t width, const KvFp8Layout* fp8) {
  if (!fp8) return randn({R, width});
  Tensor p = Tensor::empty({R, fp8->bytes()}, DType::U8);
  for (int64_t i = 0; i < p.numel(); ++i) p.data<uint8_t>()[i] = uint8_t(rng());
  return p;
}

class FusedKv : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(2);
};

TEST_F(FusedKv, LatentWriteEqualsSeparateOps) {
  struct W {
    int64_t Dl, Dr;
  };
  for (W w : {W{512, 64}, W{256, 64}, W{64, 16}})
    for (int64_t T : {1, 3, 37, 300})
      for (bool fp8 : {false, true})
        for (float af : {1.0f, 0.7f}) {
          SCOPED_TRACE(testing::Message() << "Dl=" << w.Dl << " Dr=" << w.Dr << " T=" << T << " fp8=" << fp8 << " af=" << af);
          const int64_t R = 400;
          const KvFp8Layout L = KvFp8Layout::latent(w.Dl, w.Dr);
          const KvFp8Layout* lp = fp8 ? &L : nullptr;
          Tensor kv = randn({T, w.Dl + w.Dr}, 1.5f), norm = randn({w.Dl}, 0.3f, 1.0f);
          const RopeTable rope = table_for(w.Dr, af);
          const auto pos = positions(T);
          const auto slots = slots_for(T, R);
          Tensor pool = pool_for(R, w.Dl + w.Dr, lp), ref = copy_of(pool);
          // What model/layer.cpp and KVCache::write_latent did before the fused op.
          Tensor c = be->alloc({T, w.Dl}, be->act_dtype());
          be->copy_cols(c, 0, kv, 0, w.Dl);
          c = be->rmsnorm(c, norm, 1e-6f);
          Tensor k_rope = be->alloc({T, w.Dr}, be->act_dtype());
          be->copy_cols(k_rope, 0, kv, w.Dl, w.Dr);
          be->rope(k_rope, 0, w.Dr, 1, w.Dr, pos, rope, RopeLayout::Interleaved);
          if (fp8) {
            be->cache_write_fp8(ref, L, c, &k_rope, slots);
          } else {
            be->cache_write(ref, 0, c, slots);
            be->cache_write(ref, c.row_size(), k_rope, slots);
          }
          Tensor kv_before = copy_of(kv);
          be->mla_kv_write(kv, w.Dl, norm, 1e-6f, pos, rope, pool, lp, slots);
          EXPECT_TRUE(same_bytes(pool, ref));
          EXPECT_TRUE(same_bytes(kv, kv_before)) << "the input must stay as it was";
        }
}

TEST_F(FusedKv, IndexerKeyWriteEqualsSeparateOps) {
  struct W {
    int64_t Di, Dr;
  };
  for (W w : {W{128, 64}, W{32, 16}})
    for (int64_t T : {1, 3, 37, 300})
      for (bool fp8 : {false, true})
        for (bool hadamard : {false, true}) {
          SCOPED_TRACE(testing::Message() << "Di=" << w.Di << " T=" << T << " fp8=" << fp8 << " hadamard=" << hadamard);
          const int64_t R = 400;
          const KvFp8Layout L = KvFp8Layout::indexer(w.Di);
          const KvFp8Layout* lp = fp8 ? &L : nullptr;
          Tensor k = randn({T, w.Di}, 2.0f, 0.5f), lw = randn({w.Di}, 0.3f, 1.0f), lb = randn({w.Di}, 0.1f);
          const RopeTable rope = table_for(w.Dr, 0.8f);
          const auto pos = positions(T);
          const auto slots = slots_for(T, R);
          Tensor pool = pool_for(R, w.Di, lp), ref = copy_of(pool);
          Tensor ki = be->layernorm(k, lw, lb, 1e-6f);
          be->rope(ki, 0, w.Di, 1, w.Dr, pos, rope, RopeLayout::HalfSplit);
          if (hadamard) be->hadamard_fp8_round(ki, w.Di);
          if (fp8) be->cache_write_fp8(ref, L, ki, nullptr, slots);
          else be->cache_write(ref, 0, ki, slots);
          be->indexer_key_write(k, lw, lb, 1e-6f, w.Dr, pos, rope, hadamard, pool, lp, slots);
          EXPECT_TRUE(same_bytes(pool, ref));
        }
}

TEST_F(FusedKv, AbsorbQRopeEqualsRopeThenAbsorb) {
  const int64_t H = 4, Dn = 32, Dr = 16, Dv = 32, Dl = 64;
  std::vector<float> wf(size_t(H * (Dn + Dv) * Dl));
  std::normal_distribution<float> d(0.f, 0.2f);
  for (auto& v : wf) v = d(rng);
  const HostTensor ht{"kv_b", DType::F32, {H * (Dn + Dv), Dl}, wf.data()};
  const LinearWeight kv_b = be->load_linear(ht, nullptr);
  for (int64_t T : {1, 3, 37}) {
    Tensor q = randn({T, H * (Dn + Dr)});
    Tensor q_sep = copy_of(q);
    const RopeTable rope = table_for(Dr, 0.7f);
    const auto pos = positions(T);
    be->rope(q_sep, Dn, Dn + Dr, H, Dr, pos, rope, RopeLayout::Interleaved);
    Tensor ref = be->mla_absorb_q(q_sep, kv_b, H, Dn, Dv);
    Tensor got = be->mla_absorb_q_rope(q, kv_b, H, Dn, Dv, pos, rope);
    EXPECT_TRUE(same_bytes(got, ref)) << "T=" << T;
  }
}

}  // namespace
