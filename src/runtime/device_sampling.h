// Backend::sample's batch from requests (the engine's path when the backend samples on its device):
// each request's row of parameters, its seed, and the distinct tokens its penalties apply to, kept up
// to date step by step instead of re-counting the whole history every step.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/sampling.h"
#include "runtime/sampler.h"

namespace ds::runtime {

bool has_penalties(const SamplingParams& p);

// The seed of a request's draws: its own, else the engine's stream for it (the seed make_rng uses).
uint64_t request_seed(const SamplingParams& p, uint64_t fallback_seed);

// The distinct tokens of one request's history with their number of occurrences in the output: the
// whole history when the repetition penalty is on (it applies to prompt tokens too), else only the
// output. The history only ever grows (a retracted request keeps prompt + output), so each update
// merges just the tokens appended since the previous one.
class PenaltyTokens {
 public:
  void update(const std::vector<int32_t>& history, size_t prompt_len, bool with_prompt);
  const std::vector<int32_t>& ids() const { return ids_; }  // ascending
  const std::vector<int32_t>& output_counts() const { return counts_; }

 private:
  std::vector<int32_t> ids_, counts_;
  size_t seen_ = 0;  // history tokens merged so far
};

// Appends the row of one request. `position`: the index in the output of the token to draw (the
// counter of its random stream); `penalties`: up to date, or null when the request has none.
void add_sampling_row(backend::SamplingBatch& batch, int64_t logits_row, const SamplingParams& p, uint64_t seed,
                      uint64_t position, const PenaltyTokens* penalties);
// Gives the batch's last row a token mask that allows only `allowed` (ids in [0, vocab); ascending
// or not): the device draws from those alone, as the host sampler does with its `allowed`.
void add_token_mask(backend::SamplingBatch& batch, const std::vector<int32_t>& allowed, int64_t vocab);
// The same from bits (bit i % 64 of 64-bit word i / 64; ids past the words are not allowed): copied as
// they are, no id list in between.
void add_token_mask_bits(backend::SamplingBatch& batch, const std::vector<uint64_t>& bits, int64_t vocab);

}  // namespace ds::runtime
