#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "runtime/sampler.h"
#include "util/error.h"

using ds::runtime::SampleResult;
using ds::runtime::SamplingParams;

namespace {

const std::vector<double> kProbs = {0.5, 0.2, 0.15, 0.1, 0.05};

std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)) + 3.0f);  // shift: softmax-invariant
  return l;
}

SampleResult draw(const std::vector<float>& logits, const SamplingParams& p, std::mt19937_64& rng,
                  const std::vector<int32_t>& history = {}, size_t prompt_len = 0) {
  return ds::runtime::sample(logits.data(), static_cast<int64_t>(logits.size()), p, history, prompt_len, rng);
}

// Frequencies of each token over n draws.
std::vector<double> frequencies(const std::vector<float>& logits, const SamplingParams& p, int n) {
  std::mt19937_64 rng(7);
  std::vector<double> f(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) f[draw(logits, p, rng).token] += 1.0 / n;
  return f;
}

void expect_distribution(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "token " << i;
}

std::vector<double> normalised(std::vector<double> v) {
  double s = 0;
  for (double x : v) s += x;
  for (double& x : v) x /= s;
  return v;
}

void expect_invalid(const std::function<void(SamplingParams&)>& set, const std::string& name) {
  SamplingParams p;
  set(p);
  try {
    p.validate();
    ADD_FAILURE() << name << ": accepted";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Sampler, GreedyIsArgmaxWithLogprob) {
  std::vector<float> l = {0.1f, 2.5f, -1.0f, 2.4f};
  SamplingParams p;
  p.temperature = 0;
  std::mt19937_64 rng(1);
  EXPECT_EQ(draw(l, p, rng).token, 1);  // without logprobs: no softmax at all
  p.logprobs = true;
  auto r = draw(l, p, rng);
  EXPECT_EQ(r.token, 1);
  double lse = 0;
  for (float v : l) lse += std::exp(double(v));
  EXPECT_NEAR(r.logprob, 2.5 - std::log(lse), 1e-5);
  EXPECT_TRUE(r.top_logprobs.empty());  // top_logprobs = 0: not asked for
}

TEST(Sampler, TopKOneEqualsGreedy) {
  std::mt19937_64 gen(99);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  SamplingParams greedy, k1;
  greedy.temperature = 0;
  k1.top_k = 1;
  k1.temperature = 1.3f;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> l(1000);
    for (float& v : l) v = normal(gen);
    std::mt19937_64 rng(trial);
    EXPECT_EQ(draw(l, k1, rng).token, draw(l, greedy, rng).token);
  }
}

TEST(Sampler, EmpiricalFrequenciesMatchSoftmax) {
  auto l = logits_of(kProbs);
  SamplingParams p;
  expect_distribution(frequencies(l, p, 20000), kProbs, 0.015);
  // Temperature 2 takes the square root of the probabilities (then renormalises).
  p.temperature = 2.0f;
  std::vector<double> want;
  for (double q : kProbs) want.push_back(std::sqrt(q));
  expect_distribution(frequencies(l, p, 20000), normalised(want), 0.015);
}

TEST(Sampler, TopPTopKMinPMasks) {
  auto l = logits_of(kProbs);
  SamplingParams p;
  p.top_p = 0.6f;  // 0.5 < 0.6 so the second token is needed; 0.7 >= 0.6 stops
  expect_distribution(frequencies(l, p, 20000), normalised({0.5, 0.2, 0, 0, 0}), 0.015);

  p = {};
  p.top_k = 3;
  expect_distribution(frequencies(l, p, 20000), normalised({0.5, 0.2, 0.15, 0, 0}), 0.015);

  p = {};
  p.min_p = 0.25f;  // floor 0.125
  expect_distribution(frequencies(l, p, 20000), normalised({0.5, 0.2, 0.15, 0, 0}), 0.015);

  // top-p applies to the top-k renormalised mass: 0.5/0.85 + 0.2/0.85 = 0.82 >= 0.8 already.
  p = {};
  p.top_k = 3;
  p.top_p = 0.8f;
  expect_distribution(frequencies(l, p, 20000), normalised({0.5, 0.2, 0, 0, 0}), 0.015);

  // A tiny top_p still keeps the most likely token.
  p = {};
  p.top_p = 1e-6f;
  expect_distribution(frequencies(l, p, 2000), {1, 0, 0, 0, 0}, 1e-9);
}

TEST(Sampler, LogprobsAreOfTheUnfilteredTemperatureScaledDistribution) {
  auto l = logits_of(kProbs);
  SamplingParams p;
  p.top_k = 2;
  p.logprobs = true;
  p.top_logprobs = 3;
  std::mt19937_64 rng(3);
  auto r = draw(l, p, rng);
  ASSERT_TRUE(r.token == 0 || r.token == 1);
  EXPECT_NEAR(r.logprob, std::log(kProbs[r.token]), 1e-5);
  ASSERT_EQ(r.top_logprobs.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.top_logprobs[i].first, i);
    EXPECT_NEAR(r.top_logprobs[i].second, std::log(kProbs[i]), 1e-5);
  }
  p.temperature = 0.5f;
  r = draw(l, p, rng);
  std::vector<double> sq;
  for (double q : kProbs) sq.push_back(q * q);
  EXPECT_NEAR(r.logprob, std::log(normalised(sq)[r.token]), 1e-5);
}

TEST(Sampler, PenaltiesOnHandComputedLogits) {
  std::vector<float> l = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.3f;
  p.logprobs = true;
  p.top_logprobs = 5;
  // Prompt {0, 1}; output {2, 2, 3}.
  std::vector<int32_t> history = {0, 1, 2, 2, 3};
  // 0: 2/2 = 1 (prompt: no frequency/presence); 1: -1*2 = -2; 2: 0.5/2 - 2*0.5 - 0.3 = -1.05;
  // 3: 3/2 - 0.5 - 0.3 = 0.7; 4 unseen: 0.
  std::vector<double> want = {1.0, -2.0, -1.05, 0.7, 0.0};
  std::mt19937_64 rng(0);
  auto r = draw(l, p, rng, history, 2);
  EXPECT_EQ(r.token, 0);
  std::vector<double> got(5);
  for (auto [t, lp] : r.top_logprobs) got[t] = lp;
  for (int t = 1; t < 5; ++t) EXPECT_NEAR(got[t] - got[0], want[t] - want[0], 1e-5) << "token " << t;

  // Without penalties the raw argmax (token 3) wins.
  p.repetition_penalty = 1.0f;
  p.frequency_penalty = p.presence_penalty = 0.0f;
  EXPECT_EQ(draw(l, p, rng, history, 2).token, 3);
  // Out-of-vocab history is an error when penalties need it.
  p.presence_penalty = 0.1f;
  EXPECT_THROW(draw(l, p, rng, {7}, 0), ds::Error);
}

TEST(Sampler, SeedReproducibility) {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(float(i)) * 2;
  SamplingParams p;
  p.seed = 42;
  p.top_p = 0.9f;
  auto run = [&](const SamplingParams& q, uint64_t fallback) {
    auto rng = ds::runtime::make_rng(q, fallback);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(draw(l, q, rng).token);
    return out;
  };
  EXPECT_EQ(run(p, 1), run(p, 2));  // the request's seed wins over the engine's
  SamplingParams other = p;
  other.seed = 43;
  EXPECT_NE(run(p, 1), run(other, 1));
  SamplingParams unseeded = p;
  unseeded.seed.reset();
  EXPECT_EQ(run(unseeded, 5), run(unseeded, 5));
}

TEST(Sampler, ValidationNamesTheParameter) {
  EXPECT_NO_THROW(SamplingParams{}.validate());
  expect_invalid([](SamplingParams& p) { p.temperature = -0.1f; }, "temperature");
  expect_invalid([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  expect_invalid([](SamplingParams& p) { p.top_p = 0.0f; }, "top_p");
  expect_invalid([](SamplingParams& p) { p.top_p = 1.5f; }, "top_p");
  expect_invalid([](SamplingParams& p) { p.top_k = 0; }, "top_k");
  expect_invalid([](SamplingParams& p) { p.top_k = -2; }, "top_k");
  expect_invalid([](SamplingParams& p) { p.min_p = -0.1f; }, "min_p");
  expect_invalid([](SamplingParams& p) { p.min_p = 1.1f; }, "min_p");
  expect_invalid([](SamplingParams& p) { p.repetition_penalty = 0.0f; }, "repetition_penalty");
  expect_invalid([](SamplingParams& p) { p.repetition_penalty = 2.5f; }, "repetition_penalty");
  expect_invalid([](SamplingParams& p) { p.frequency_penalty = 2.1f; }, "frequency_penalty");
  expect_invalid([](SamplingParams& p) { p.presence_penalty = -2.1f; }, "presence_penalty");
  expect_invalid([](SamplingParams& p) { p.top_logprobs = -1; }, "top_logprobs");
  // sample() validates too, and refuses logits without a finite maximum.
  std::vector<float> l = {-INFINITY, -INFINITY};
  SamplingParams p;
  std::mt19937_64 rng(0);
  EXPECT_THROW(draw(l, p, rng), ds::Error);
  l = {0.0f, 1.0f};
  p.top_k = 0;
  EXPECT_THROW(draw(l, p, rng), ds::Error);
}

TEST(Sampler, AllowedTokensMaskEverythingElse) {
  auto l = logits_of(kProbs);
  std::mt19937_64 rng(3);
  const std::vector<int32_t> allowed = {2, 4};
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.logprobs = true;
  greedy.top_logprobs = 5;
  auto r = ds::runtime::sample(l.data(), 5, greedy, {}, 0, rng, &allowed);
  EXPECT_EQ(r.token, 2);  // the best allowed one, not the best overall (0)
  // Logprobs are over the allowed tokens: 0.15 / (0.15 + 0.05); masked ones are no alternatives.
  EXPECT_NEAR(r.logprob, std::log(0.75), 1e-5);
  ASSERT_EQ(r.top_logprobs.size(), 2u);
  EXPECT_EQ(r.top_logprobs[1].first, 4);
  // Sampling, also with top-k wider than the allowed set and min_p = 0: only allowed tokens, in proportion.
  SamplingParams p;
  p.top_k = 4;
  std::vector<double> f(5, 0.0);
  for (int i = 0; i < 20000; ++i) f[ds::runtime::sample(l.data(), 5, p, {}, 0, rng, &allowed).token] += 1.0 / 20000;
  expect_distribution(f, {0, 0, 0.75, 0, 0.25}, 0.015);
  // A single allowed token is forced whatever its logit.
  const std::vector<int32_t> one = {3};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ds::runtime::sample(l.data(), 5, p, {}, 0, rng, &one).token, 3);
  const std::vector<int32_t> bad = {7};
  EXPECT_THROW(ds::runtime::sample(l.data(), 5, p, {}, 0, rng, &bad), ds::Error);
}
