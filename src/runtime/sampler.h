// Next-token sampling for one request, with SGLang's (and vLLM's) parameter semantics:
// penalties -> temperature (0 = greedy) -> top-k -> top-p -> min-p -> draw.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace ds::runtime {

// A request's error when its logits hold a NaN or +inf (a corrupt checkpoint or an overflow).
inline constexpr const char* kNonFiniteLogits =
    "the model produced non-finite logits (NaN or infinity); its weights may be corrupt";

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  float top_p = 1.0f;               // (0, 1]
  int32_t top_k = -1;               // -1 = off, else >= 1
  float min_p = 0.0f;               // [0, 1], relative to the most likely token
  float repetition_penalty = 1.0f;  // (0, 2]; prompt and output tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; output tokens, per occurrence
  float presence_penalty = 0.0f;    // [-2, 2]; output tokens, once
  std::optional<uint64_t> seed;     // per-request RNG seed (see make_rng)
  bool ignore_eos = false;          // for the scheduler's stop logic; the sampler ignores it
  bool logprobs = false;
  int32_t top_logprobs = 0;         // >= 0; the most likely alternatives reported when logprobs

  // Throws ds::Error naming the offending parameter.
  void validate() const;
  bool greedy() const;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;  // of `token` when params.logprobs (else 0: greedy then skips the softmax); see sampler.cpp
  std::vector<std::pair<int32_t, float>> top_logprobs;  // most likely first; filled when logprobs
};

// The request's generator: seeded from params.seed when given, otherwise from `fallback_seed`
// (the engine's own stream), so a seeded request draws the same tokens whatever runs beside it.
std::mt19937_64 make_rng(const SamplingParams& p, uint64_t fallback_seed);

// `history` is the prompt followed by the output so far; its first `prompt_len` ids are the prompt
// (repetition penalty uses all of them, frequency/presence penalties only the output).
// `allowed` (ascending ids; null or empty = the whole vocabulary) masks every other token before
// anything else is computed, so the draw, the greedy choice and the reported logprobs are all over
// the allowed tokens only (a forced continuation; see forced_continuation.h).
SampleResult sample(const float* logits, int64_t vocab, const SamplingParams& p, const std::vector<int32_t>& history,
                    size_t prompt_len, std::mt19937_64& rng, const std::vector<int32_t>* allowed = nullptr);

}  // namespace ds::runtime
