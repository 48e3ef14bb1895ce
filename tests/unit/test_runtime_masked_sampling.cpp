// Masked rows (a grammar's or a forced continuation's allowed tokens) sampled where the backend
// samples on its device: the allowed ids travel as a bitmask (SamplingBatch::token_masks) and the
// backend applies it after the penalties. Against the host sampler with its `allowed` list: greedy
// tokens and logprobs equal, every sampled token allowed, a NaN in a masked-out logit harmless.
// (tests/gpu/gpu_sampling_check runs the same comparison against the CUDA kernel.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "host_sampling_backend.h"
#include "runtime/device_sampling.h"
#include "runtime/step_sampling.h"

using namespace ds;
using namespace ds::runtime;

namespace {

TEST(MaskedSampling, MaskBitsAreTheAllowedIds) {
  backend::SamplingBatch b;
  for (int64_t vocab : {1, 31, 32, 33, 1000}) {
    std::mt19937 rng{uint32_t(vocab)};
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < vocab; ++t)
      if (rng() % 3 == 0 || t == vocab - 1) allowed.push_back(t);
    std::shuffle(allowed.begin(), allowed.end(), rng);  // any order
    add_sampling_row(b, 0, SamplingParams{}, 1, 0, nullptr);
    add_token_mask(b, allowed, vocab);
    const auto& row = b.rows.back();
    ASSERT_GE(row.mask_begin, 0);
    ASSERT_EQ(size_t(row.mask_begin + backend::mask_words(vocab)), b.token_masks.size());
    const std::set<int32_t> set(allowed.begin(), allowed.end());
    for (int32_t t = 0; t < int32_t(backend::mask_words(vocab) * 32); ++t)
      EXPECT_EQ(backend::mask_allows(b.token_masks.data() + row.mask_begin, t), set.count(t) > 0) << vocab << " " << t;
    // The same set as 64-bit words (a grammar's bitmask), with bits past the vocabulary that must go.
    std::vector<uint64_t> bits(size_t(vocab + 63) / 64 + 1, 0);
    for (int32_t t : allowed) bits[size_t(t) / 64] |= uint64_t(1) << (t % 64);
    bits.back() |= uint64_t(1) << 63;
    add_sampling_row(b, 1, SamplingParams{}, 1, 0, nullptr);
    add_token_mask_bits(b, bits, vocab);
    const auto& row2 = b.rows.back();
    ASSERT_EQ(size_t(row2.mask_begin + backend::mask_words(vocab)), b.token_masks.size());
    for (int32_t t = 0; t < int32_t(backend::mask_words(vocab) * 32); ++t)
      EXPECT_EQ(backend::mask_allows(b.token_masks.data() + row2.mask_begin, t), set.count(t) > 0) << vocab << " " << t;
  }
  add_sampling_row(b, 1, SamplingParams{}, 1, 0, nullptr);
  EXPECT_EQ(b.rows.back().mask_begin, -1) << "unmasked rows carry no mask";
  EXPECT_THROW(add_token_mask(b, {5}, 5), Error);
}

TEST(MaskedSampling, DeviceRowsMatchTheHostSampler) {
  const int64_t R = 24, V = 1000;
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.f, 3.f);
  Tensor logits = Tensor::empty({R, V}, DType::F32);
  for (int64_t i = 0; i < R * V; ++i) logits.f32()[i] = normal(gen);

  std::vector<SamplingParams> params(R);
  std::vector<std::vector<int32_t>> allowed(R), history(R);
  std::vector<std::vector<uint64_t>> bits(R);
  std::vector<std::mt19937_64> rngs(R);
  std::vector<std::unique_ptr<PenaltyTokens>> pens(R);
  std::vector<SampleSlot> slots(R);
  for (int64_t r = 0; r < R; ++r) {
    SamplingParams& p = params[size_t(r)];
    p.temperature = r % 2 ? 0.9f : 0.0f;  // even rows greedy: compared token for token
    if (r % 4 == 1) p.top_k = 20;
    if (r % 3 == 0) p.frequency_penalty = 0.7f, p.repetition_penalty = 1.3f;
    if (r % 5 == 0) p.logprobs = true, p.top_logprobs = 2;
    for (int k = 0; k < 30; ++k) history[size_t(r)].push_back(int32_t(gen() % V));
    const size_t n = r % 6 == 5 ? 0 : 2 + gen() % 300;  // some rows unmasked
    std::set<int32_t> pick;
    while (pick.size() < n) pick.insert(int32_t(gen() % V));
    allowed[size_t(r)].assign(pick.begin(), pick.end());
    if (r == 2) {  // a NaN at a masked-out id: harmless
      int32_t out = 0;
      while (pick.count(out)) ++out;
      logits.f32()[r * V + out] = NAN;
    }
    SampleSlot& s = slots[size_t(r)];
    s.params = &p;
    s.history = &history[size_t(r)];
    s.prompt_len = 10;
    s.rng = &rngs[size_t(r)];
    s.seed = uint64_t(r + 1);
    s.output_index = 3;
    s.penalties = &pens[size_t(r)];
    s.allowed = allowed[size_t(r)].empty() ? nullptr : &allowed[size_t(r)];
    if (s.allowed && r % 3 == 1) {  // a grammar's bitmask instead of an id list
      bits[size_t(r)].assign(size_t(V + 63) / 64, 0);
      for (int32_t t : allowed[size_t(r)]) bits[size_t(r)][size_t(t) / 64] |= uint64_t(1) << (t % 64);
      s.allowed = nullptr;
      s.allowed_bits = &bits[size_t(r)];
    }
  }

  model::ForwardOutput host_out;
  host_out.logits = Tensor::empty({R, V}, DType::F32);
  std::copy(logits.f32(), logits.f32() + R * V, host_out.logits.f32());
  for (int32_t r = 0; r < R; ++r) host_out.logits_row0.push_back(r);
  model::ForwardOutput dev_out;
  dev_out.logits = logits;
  dev_out.logits_row0 = host_out.logits_row0;

  DrawnTokens host(R), dev(R);
  sample_on_host(slots, host_out, V, host);
  fakes::HostSamplingBackend hb;
  sample_on_device(hb, slots, dev_out, V, dev);
  EXPECT_EQ(hb.draws().size(), size_t(R)) << "every row, masked or not, is the device's";
  // One allowed token (either form) is taken without sampling, on both paths.
  std::vector<int32_t> one = {17};
  std::vector<uint64_t> one_bit(size_t(V + 63) / 64, 0);
  one_bit[0] = uint64_t(1) << 17;
  std::vector<SampleSlot> two = {slots[1], slots[3]};
  two[0].allowed = &one;
  two[0].allowed_bits = nullptr;
  two[1].allowed = nullptr;
  two[1].allowed_bits = &one_bit;
  DrawnTokens h2(2), d2(2);
  model::ForwardOutput out2;
  out2.logits = host_out.logits;
  out2.logits_row0 = {0, 1};
  sample_on_host(two, out2, V, h2);
  sample_on_device(hb, two, out2, V, d2);
  EXPECT_EQ(hb.draws().size(), size_t(R)) << "single allowed tokens are not drawn";
  for (const auto* d : {&h2, &d2})
    for (size_t k = 0; k < 2; ++k) EXPECT_EQ(d->drawn[k].token, 17);
  for (int64_t r = 0; r < R; ++r) {
    const size_t i = size_t(r);
    ASSERT_EQ(host.failed[i], "") << r;
    ASSERT_EQ(dev.failed[i], "") << r;
    if (!allowed[i].empty()) {
      EXPECT_TRUE(std::binary_search(allowed[i].begin(), allowed[i].end(), dev.drawn[i].token)) << r;
      EXPECT_TRUE(std::binary_search(allowed[i].begin(), allowed[i].end(), host.drawn[i].token)) << r;
    }
    if (params[i].temperature == 0.0f) {
      EXPECT_EQ(dev.drawn[i].token, host.drawn[i].token) << r;
    }
    if (params[i].logprobs && params[i].temperature == 0.0f) {
      EXPECT_NEAR(dev.drawn[i].logprob, host.drawn[i].logprob, 1e-5) << r;
      ASSERT_EQ(dev.drawn[i].top_logprobs.size(), host.drawn[i].top_logprobs.size()) << r;
      for (size_t k = 0; k < dev.drawn[i].top_logprobs.size(); ++k)
        EXPECT_EQ(dev.drawn[i].top_logprobs[k].first, host.drawn[i].top_logprobs[k].first) << r;
    }
  }
}

}  // namespace
