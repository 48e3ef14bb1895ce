// The inputs and outputs of Backend::sample: next-token sampling next to the logits (plain structs, so
// that backend/ knows nothing of runtime/; runtime/device_sampling.h builds them from requests).
// Semantics are runtime/sampler.h's: penalties -> temperature (0 = greedy) -> top-k -> top-p -> min-p
// -> draw; logprobs of the penalised, tempered distribution before filtering.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace ds::backend {

// One row of logits to sample from, with its request's (validated) parameters.
struct SamplingRow {
  int64_t logits_row = 0;           // row of the logits tensor
  float temperature = 0.0f;         // 0 = greedy (the caller maps its own greedy rule to 0)
  int32_t top_k = -1;               // <= 0 or >= vocab: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // on every listed penalty token
  float frequency_penalty = 0.0f;   // per occurrence in the output
  float presence_penalty = 0.0f;    // once, on listed tokens that occur in the output
  // The draw depends only on (seed, position) and the row's own logits: a seeded request samples the
  // same tokens whatever else runs in the batch. `position`: the index of the output token being drawn.
  uint64_t seed = 0;
  uint64_t position = 0;
  bool logprobs = false;
  int32_t top_logprobs = 0;  // <= Backend::max_sample_top_logprobs()
  // This row's entries in SamplingBatch::penalty_ids / penalty_output_counts.
  int32_t penalty_begin = 0, penalty_count = 0;
  // The row's token mask (a grammar's or a forced continuation's): its first word in
  // SamplingBatch::token_masks; -1: none (every token may be drawn).
  int32_t mask_begin = -1;
};

struct SamplingBatch {
  std::vector<SamplingRow> rows;
  // Per row, the distinct tokens its penalties apply to: the whole history (prompt + output) when the
  // repetition penalty is on, else the output's tokens; with their number of occurrences in the output
  // (0: in the prompt only).
  std::vector<int32_t> penalty_ids, penalty_output_counts;
  // Token masks, mask_words(vocab) words per masked row: bit (i % 32) of word i / 32 set = token i
  // may be drawn. Applied after the penalties and before everything else, as runtime/sampler.h's
  // `allowed`: a masked token's logit counts as -inf (so it is never drawn, never in the logprobs).
  std::vector<uint32_t> token_masks;
};

inline int64_t mask_words(int64_t vocab) { return (vocab + 31) / 32; }
inline bool mask_allows(const uint32_t* words, int64_t token) { return (words[token >> 5] >> (token & 31)) & 1u; }
// The host's reading of a mask (what the device kernel does): masked tokens' logits become -inf.
inline void apply_token_mask(float* logits, int64_t vocab, const uint32_t* words) {
  for (int64_t i = 0; i < vocab; ++i)
    if (!mask_allows(words, i)) logits[i] = -__builtin_inff();
}

struct SampledRow {
  int32_t token = -1;    // -1: the row has a NaN or +inf logit, or no finite one (nothing is drawn)
  float logprob = 0.0f;  // of `token`, when the row asked for logprobs
  std::vector<std::pair<int32_t, float>> top_logprobs;  // most likely first, when asked
};

}  // namespace ds::backend
