// Random weights generated in memory (model/random_weights.h; serve --load-format dummy, bench model
// --preset): deterministic in the seed, and a tensor-parallel rank's weights are exactly its cut of one
// rank's — the FP8 parts generated alone (128-aligned edges) and those cut from the whole tensor (edges
// inside a scale block), column and row cuts, the embedding, the LM head, the routed experts.
#include <gtest/gtest.h>

#include <memory>

#include "backend/backend.h"
#include "dist/group.h"
#include "dist/local_group.h"
#include "model/make_model.h"
#include "model/random_weights.h"
#include "model/tensor_parallel.h"
#include "model/weight_bytes.h"

using namespace ds;
using namespace ds::model;

namespace {

// The tiny preset widened where a --tp 2 cut then lands on 128-column scale blocks (the MLP and expert
// widths: generated per rank) and left narrow where it does not (heads: q_b rows and o_proj columns of
// 96 and 64, cut from the whole tensor).
ModelConfig test_config() {
  MakeModelOptions o;
  o.preset = "tiny";
  o.overrides = {{"intermediate_size", 512}, {"moe_intermediate_size", 256}, {"hidden_size", 256}};
  return preset_config(o);
}

// part == rows [r0, r0 + part rows) of full (cols == false) or columns [c0, ...) of every row.
void expect_cut(const Tensor& part, const Tensor& full, bool cols, int64_t at, const std::string& what) {
  if (cols) ASSERT_EQ(part.dim(0), full.dim(0)) << what;
  else ASSERT_EQ(part.dim(1), full.dim(1)) << what;
  const int64_t n = part.dim(0), k = part.dim(1), K = full.dim(1);
  ASSERT_EQ(part.dtype(), DType::F32) << what;
  const float* p = part.data<float>();
  const float* f = full.data<float>();
  int64_t differ = 0, nonzero = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const float want = cols ? f[r * K + at + c] : f[(at + r) * K + c];
      differ += p[r * k + c] != want;
      nonzero += p[r * k + c] != 0.f;
    }
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << n * k << " values differ from the cut";
  EXPECT_GT(nonzero, n * k / 2) << what << ": mostly zeros";
}

}  // namespace

TEST(RandomWeights, DeterministicInTheSeed) {
  const ModelConfig c = test_config();
  auto be = backend::make_cpu_backend(2);
  ModelWeights a = random_weights(c, *be, 7), b = random_weights(c, *be, 7), other = random_weights(c, *be, 8);
  expect_cut(a.layers[0].attn.q_b.w, b.layers[0].attn.q_b.w, false, 0, "q_b, same seed");
  expect_cut(a.lm_head.w, b.lm_head.w, false, 0, "lm_head, same seed");
  const Tensor& x = a.layers[0].attn.q_b.w;
  const Tensor& y = other.layers[0].attn.q_b.w;
  int64_t same = 0;
  for (int64_t i = 0; i < x.numel(); ++i) same += x.data<float>()[i] == y.data<float>()[i];
  EXPECT_LT(same, x.numel() / 2) << "seeds 7 and 8 give the same q_b";
}

TEST(RandomWeights, TensorParallelRanksHoldTheirCutOfOneRanksWeights) {
  const ModelConfig c = test_config();
  auto be = backend::make_cpu_backend(2);
  const ModelWeights full = random_weights(c, *be, 3, {}, true);
  ASSERT_EQ(full.mtp.size(), 1u);
  for (bool ep : {false, true}) {
    auto groups = dist::make_local_groups(2);
    for (int r = 0; r < 2; ++r) {
      const TensorParallel tp{r, 2, ep, groups[size_t(r)].get()};
      const ModelWeights w = random_weights(c, *be, 3, tp, true);
      const std::string who = fmt::format("rank {} of 2{}", r, ep ? " (ep)" : "");
      const int64_t V = c.vocab_size / 2, I = c.intermediate_size / 2, Im = c.moe_intermediate_size / 2;
      const int64_t Hq = c.num_attention_heads / 2;
      expect_cut(w.embed, full.embed, false, r * V, who + " embed");
      expect_cut(w.lm_head.w, full.lm_head.w, false, r * V, who + " lm_head");
      for (size_t l = 0; l < w.layers.size(); ++l) {
        const LayerWeights &p = w.layers[l], &f = full.layers[l];
        const std::string at = fmt::format("{} layer {} ", who, l);
        expect_cut(p.attn.q_b.w, f.attn.q_b.w, false, r * Hq * (c.qk_nope_head_dim + c.qk_rope_head_dim), at + "q_b");
        expect_cut(p.attn.o.w, f.attn.o.w, true, r * Hq * c.v_head_dim, at + "o_proj");
        expect_cut(p.attn.q_a.w, f.attn.q_a.w, false, 0, at + "q_a (whole)");
        if (!f.ffn.moe) {
          expect_cut(p.ffn.dense.gate.w, f.ffn.dense.gate.w, false, r * I, at + "gate");
          expect_cut(p.ffn.dense.down.w, f.ffn.dense.down.w, true, r * I, at + "down");
          continue;
        }
        const auto& pe = p.ffn.experts->experts();
        const auto& fe = f.ffn.experts->experts();
        if (ep) {  // whole experts, this rank's half
          ASSERT_EQ(pe.size() * 2, fe.size()) << at;
          for (size_t e = 0; e < pe.size(); ++e)
            expect_cut(pe[e].up.w, fe[size_t(p.ffn.expert_begin) + e].up.w, false, 0, at + "expert up (ep)");
        } else {
          ASSERT_EQ(pe.size(), fe.size()) << at;
          for (size_t e = 0; e < pe.size(); ++e) {
            expect_cut(pe[e].up.w, fe[e].up.w, false, r * Im, at + "expert up");
            expect_cut(pe[e].down.w, fe[e].down.w, true, r * Im, at + "expert down");
          }
        }
      }
    }
  }
}

// memory-plan's dry run (model/weight_bytes.h) against the weights a rank really gets: the FP8 bytes of its
// dense MLP and routed experts, from the shapes random_weights made for it, in the CUDA backend's format.
TEST(RandomWeights, DryRunCountsTheBytesOfTheRanksRealWeights) {
  const ModelConfig c = test_config();
  auto be = backend::make_cpu_backend(2);
  auto fp8_bytes = [](const backend::LinearWeight& w) {
    const int64_t n = w.out_features, k = w.in_features, nb = (n + 127) / 128, kb = (k + 127) / 128;
    return n * k + nb * ((kb + 3) / 4 * 4) * 4;
  };
  for (bool ep : {false, true})
    for (int size : {1, 2}) {
      auto groups = dist::make_local_groups(size);
      for (int r = 0; r < size; ++r) {
        const TensorParallel tp{r, size, ep && size > 1, size > 1 ? groups[size_t(r)].get() : nullptr};
        const ModelWeights w = random_weights(c, *be, 3, tp, true);
        const WeightBytes b = rank_weight_bytes(c, tp, true);
        int64_t dense = 0, experts = 0, shared = 0;
        for (const LayerWeights& l : w.layers) {
          const backend::ExpertWeights& d = l.ffn.dense;
          (l.ffn.moe ? shared : dense) += fp8_bytes(d.gate) + fp8_bytes(d.up) + fp8_bytes(d.down);
          if (l.ffn.moe)
            for (const auto& e : l.ffn.experts->experts())
              experts += fp8_bytes(e.gate) + fp8_bytes(e.up) + fp8_bytes(e.down);
        }
        const std::string who = fmt::format("rank {} of {}{}", r, size, tp.expert_parallel ? " (ep)" : "");
        EXPECT_EQ(b.dense_mlp, dense) << who;
        EXPECT_EQ(b.routed_experts, experts) << who;
        EXPECT_EQ(b.shared_experts, shared) << who;
        EXPECT_GT(b.attention, 0) << who;
        EXPECT_GT(b.mtp, 0) << who;
        EXPECT_EQ(b.total(), b.attention + b.dense_mlp + b.routed_experts + b.shared_experts + b.router + b.embed_head +
                                 b.norms + b.mtp);
      }
    }
}

