#include "runtime/device_sampling.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>

#include "util/error.h"

namespace ds::runtime {

bool has_penalties(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
}

uint64_t request_seed(const SamplingParams& p, uint64_t fallback_seed) { return p.seed.value_or(fallback_seed); }

void PenaltyTokens::update(const std::vector<int32_t>& history, size_t prompt_len, bool with_prompt) {
  if (seen_ >= history.size()) return;
  // The new tokens as (id, output occurrences), sorted, then merged into the sorted lists.
  std::vector<std::pair<int32_t, int32_t>> add;
  for (size_t i = seen_; i < history.size(); ++i) {
    const bool output = i >= prompt_len;
    if (output || with_prompt) add.emplace_back(history[i], output ? 1 : 0);
  }
  seen_ = history.size();
  std::sort(add.begin(), add.end());
  std::vector<int32_t> ids, counts;
  ids.reserve(ids_.size() + add.size());
  counts.reserve(ids.capacity());
  size_t a = 0, o = 0;
  auto put = [&](int32_t id, int32_t n) {
    if (!ids.empty() && ids.back() == id) counts.back() += n;
    else ids.push_back(id), counts.push_back(n);
  };
  while (a < add.size() || o < ids_.size()) {
    if (o < ids_.size() && (a == add.size() || ids_[o] <= add[a].first)) put(ids_[o], counts_[o]), ++o;
    else put(add[a].first, add[a].second), ++a;
  }
  ids_ = std::move(ids);
  counts_ = std::move(counts);
}

void add_sampling_row(backend::SamplingBatch& batch, int64_t logits_row, const SamplingParams& p, uint64_t seed,
                      uint64_t position, const PenaltyTokens* penalties) {
  backend::SamplingRow r;
  r.logits_row = logits_row;
  r.temperature = p.greedy() ? 0.0f : p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.frequency_penalty = p.frequency_penalty;
  r.presence_penalty = p.presence_penalty;
  r.seed = seed;
  r.position = position;
  r.logprobs = p.logprobs;
  r.top_logprobs = p.logprobs ? p.top_logprobs : 0;
  if (penalties && has_penalties(p)) {
    r.penalty_begin = int32_t(batch.penalty_ids.size());
    r.penalty_count = int32_t(penalties->ids().size());
    batch.penalty_ids.insert(batch.penalty_ids.end(), penalties->ids().begin(), penalties->ids().end());
    batch.penalty_output_counts.insert(batch.penalty_output_counts.end(), penalties->output_counts().begin(),
                                       penalties->output_counts().end());
  }
  batch.rows.push_back(r);
}

void add_token_mask(backend::SamplingBatch& batch, const std::vector<int32_t>& allowed, int64_t vocab) {
  DS_CHECK(!batch.rows.empty(), "add_token_mask: no row to mask");
  const size_t begin = batch.token_masks.size();
  DS_CHECK(begin + size_t(backend::mask_words(vocab)) < size_t(INT32_MAX), "add_token_mask: too many masked rows");
  batch.token_masks.resize(begin + size_t(backend::mask_words(vocab)), 0u);
  uint32_t* words = batch.token_masks.data() + begin;
  for (int32_t t : allowed) {
    DS_CHECK(t >= 0 && t < vocab, "sample: allowed token {} outside the vocabulary of {}", t, vocab);
    words[t >> 5] |= 1u << (t & 31);
  }
  batch.rows.back().mask_begin = int32_t(begin);
}

void add_token_mask_bits(backend::SamplingBatch& batch, const std::vector<uint64_t>& bits, int64_t vocab) {
  DS_CHECK(!batch.rows.empty(), "add_token_mask: no row to mask");
  const size_t begin = batch.token_masks.size(), words = size_t(backend::mask_words(vocab));
  DS_CHECK(begin + words < size_t(INT32_MAX), "add_token_mask: too many masked rows");
  batch.token_masks.resize(begin + words, 0u);
  uint32_t* out = batch.token_masks.data() + begin;
  // 64-bit word k holds 32-bit words 2k (low half) and 2k + 1 (high half): on a little-endian host that is
  // the 64-bit words' own byte order, so one copy.
  static_assert(std::endian::native == std::endian::little, "token masks: 32-bit words from 64-bit ones");
  std::memcpy(out, bits.data(), std::min(bits.size() * 2, words) * sizeof(uint32_t));
  if (vocab % 32) out[words - 1] &= (1u << (vocab % 32)) - 1;  // no bit past the vocabulary
  batch.rows.back().mask_begin = int32_t(begin);
}

}  // namespace ds::runtime
