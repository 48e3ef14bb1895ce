#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace ds::runtime {

namespace {

// SGLang treats temperatures below this as greedy.
constexpr float kGreedyBelow = 1e-6f;

bool finite(float v) { return std::isfinite(v); }

// A uniform double in [0, 1) from the top 53 bits: identical on every standard library, unlike
// std::uniform_real_distribution, so seeded runs reproduce across builds.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

void apply_penalties(std::vector<float>& x, const SamplingParams& p, const std::vector<int32_t>& history,
                     size_t prompt_len) {
  const bool rep = p.repetition_penalty != 1.0f;
  const bool freq = p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  if (!rep && !freq) return;
  const int64_t vocab = static_cast<int64_t>(x.size());
  for (int32_t t : history) DS_CHECK(t >= 0 && t < vocab, "sample: token id {} out of vocab {}", t, vocab);
  if (rep) {
    std::vector<int32_t> seen(history);
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    // Dividing a positive logit and multiplying a negative one both make the token less likely.
    for (int32_t t : seen) x[t] = x[t] > 0 ? x[t] / p.repetition_penalty : x[t] * p.repetition_penalty;
  }
  if (freq) {
    std::vector<int32_t> out(history.begin() + std::min(prompt_len, history.size()), history.end());
    std::sort(out.begin(), out.end());
    for (size_t i = 0; i < out.size();) {
      size_t j = i;
      while (j < out.size() && out[j] == out[i]) ++j;
      x[out[i]] -= static_cast<float>(j - i) * p.frequency_penalty + p.presence_penalty;
      i = j;
    }
  }
}

// Most likely first, lower id first on ties (deterministic).
struct ByProbDesc {
  const std::vector<double>& v;
  bool operator()(int32_t a, int32_t b) const { return v[a] != v[b] ? v[a] > v[b] : a < b; }
};

}  // namespace

bool SamplingParams::greedy() const { return temperature < kGreedyBelow; }

void SamplingParams::validate() const {
  DS_CHECK(finite(temperature) && temperature >= 0.0f, "temperature must be >= 0, got {}", temperature);
  DS_CHECK(finite(top_p) && top_p > 0.0f && top_p <= 1.0f, "top_p must be in (0, 1], got {}", top_p);
  DS_CHECK(top_k == -1 || top_k >= 1, "top_k must be -1 (disabled) or at least 1, got {}", top_k);
  DS_CHECK(finite(min_p) && min_p >= 0.0f && min_p <= 1.0f, "min_p must be in [0, 1], got {}", min_p);
  DS_CHECK(finite(repetition_penalty) && repetition_penalty > 0.0f && repetition_penalty <= 2.0f,
           "repetition_penalty must be in (0, 2], got {}", repetition_penalty);
  DS_CHECK(finite(frequency_penalty) && frequency_penalty >= -2.0f && frequency_penalty <= 2.0f,
           "frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  DS_CHECK(finite(presence_penalty) && presence_penalty >= -2.0f && presence_penalty <= 2.0f,
           "presence_penalty must be in [-2, 2], got {}", presence_penalty);
  DS_CHECK(top_logprobs >= 0, "top_logprobs must be >= 0, got {}", top_logprobs);
}

std::mt19937_64 make_rng(const SamplingParams& p, uint64_t fallback_seed) {
  return std::mt19937_64(p.seed.value_or(fallback_seed));
}

// Reported logprobs follow SGLang's default: the log-softmax of the penalised logits divided by the
// temperature (temperature 1 for greedy), before top-k/top-p/min-p filtering.
SampleResult sample(const float* logits, int64_t vocab, const SamplingParams& p, const std::vector<int32_t>& history,
                    size_t prompt_len, std::mt19937_64& rng, const std::vector<int32_t>* allowed) {
  DS_CHECK(vocab > 0, "sample: empty vocabulary");
  p.validate();
  std::vector<float> penalised;
  const float* x = logits;  // read in place unless penalties or a mask change it
  if (p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    penalised.assign(logits, logits + vocab);
    apply_penalties(penalised, p, history, prompt_len);
    x = penalised.data();
  }
  if (allowed && !allowed->empty()) {
    std::vector<float> masked(size_t(vocab), -INFINITY);
    for (int32_t t : *allowed) {
      DS_CHECK(t >= 0 && t < vocab, "sample: allowed token {} outside the vocabulary of {}", t, vocab);
      masked[size_t(t)] = x[t];
    }
    penalised = std::move(masked);
    x = penalised.data();
  }
  // A NaN or +inf anywhere fails the row, as on the device (Backend::sample); -inf is a masked token.
  int32_t argmax = 0;
  bool non_finite = std::isnan(x[0]) || x[0] == INFINITY;
  for (int64_t i = 1; i < vocab; ++i) {
    non_finite |= std::isnan(x[i]) || x[i] == INFINITY;
    if (x[i] > x[argmax]) argmax = static_cast<int32_t>(i);
  }
  DS_CHECK(!non_finite, "{}", kNonFiniteLogits);
  DS_CHECK(finite(x[argmax]), "sample: every logit is -inf (no token can be drawn)");
  SampleResult r;
  const bool greedy = p.greedy();
  if (greedy && !p.logprobs) {  // the common serving case: no softmax over the vocabulary at all
    r.token = argmax;
    return r;
  }
  const double inv_t = greedy ? 1.0 : 1.0 / p.temperature;
  const double top = x[argmax] * inv_t;
  // Unnormalised probabilities exp(x/T - max): every filter below compares them only relatively.
  std::vector<double> prob(vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += (prob[i] = std::exp(x[i] * inv_t - top));
  const double lse = top + std::log(sum);
  auto logp = [&](int32_t t) { return x[t] * inv_t - lse; };
  if (greedy) {
    r.token = argmax;
  } else {
    std::vector<int32_t> cand(vocab);
    std::iota(cand.begin(), cand.end(), 0);
    const bool use_k = p.top_k > 0 && p.top_k < vocab;
    if (use_k || p.top_p < 1.0f) {
      size_t keep = use_k ? static_cast<size_t>(p.top_k) : cand.size();
      // Sort only as far as needed: top_p usually stops within the first few hundred tokens.
      size_t sorted = use_k ? keep : std::min<size_t>(keep, 1024);
      std::partial_sort(cand.begin(), cand.begin() + sorted, cand.end(), ByProbDesc{prob});
      if (p.top_p < 1.0f) {
        // The smallest most-likely set reaching top_p of the (top-k renormalised) mass.
        double mass = 0;
        if (use_k) {
          for (size_t j = 0; j < keep; ++j) mass += prob[cand[j]];
        } else {
          mass = sum;
        }
        double before = 0;
        size_t n = 0;
        for (;;) {
          while (n < sorted && (n == 0 || before < p.top_p * mass)) before += prob[cand[n++]];
          if (n < sorted || !(before < p.top_p * mass) || sorted == keep) break;
          const size_t more = std::min(keep, sorted * 8);  // not reached yet: sort further
          std::partial_sort(cand.begin() + sorted, cand.begin() + more, cand.end(), ByProbDesc{prob});
          sorted = more;
        }
        keep = n;
      }
      cand.resize(keep);
    }
    if (p.min_p > 0.0f) {
      // Relative to the most likely token, which every filter above keeps.
      const double floor = p.min_p * prob[argmax];
      std::erase_if(cand, [&](int32_t t) { return prob[t] < floor; });
    }
    double total = 0;
    for (int32_t t : cand) total += prob[t];
    double u = uniform01(rng) * total;
    r.token = argmax;  // replaced below; the fallback guards against rounding at the top end
    for (int32_t t : cand) {
      if (prob[t] > 0) r.token = t;  // never a token of probability 0 (masked ones)
      if (u < prob[t]) break;
      u -= prob[t];
    }
  }
  r.logprob = static_cast<float>(logp(r.token));
  if (p.logprobs && p.top_logprobs > 0) {
    const int64_t n = std::min<int64_t>(p.top_logprobs, vocab);
    std::vector<int32_t> ids(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), ByProbDesc{prob});
    for (int64_t j = 0; j < n; ++j) {
      if (x[ids[j]] == -INFINITY) break;  // masked out: not an alternative (and -inf is not JSON)
      r.top_logprobs.emplace_back(ids[j], static_cast<float>(logp(ids[j])));
    }
  }
  return r;
}

}  // namespace ds::runtime
