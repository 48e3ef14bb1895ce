#include "runtime/step_sampling.h"

#include "backend/backend.h"

namespace ds::runtime {

namespace {
const float* host_row(const model::ForwardOutput& out, size_t i, int64_t vocab) {
  return out.logits.f32() + int64_t(out.logits_row0[i]) * vocab;
}
// The token a slot must take when it allows exactly one (taken without sampling, unless logprobs
// are wanted); -1 otherwise.
int32_t single_allowed(const SampleSlot& s) {
  if (s.params->logprobs) return -1;
  if (s.allowed) return s.allowed->size() == 1 ? s.allowed->front() : -1;
  if (!s.allowed_bits) return -1;
  int32_t found = -1;
  const auto& w = *s.allowed_bits;
  for (size_t k = 0; k < w.size(); ++k) {
    if (!w[k]) continue;
    if (found >= 0 || (w[k] & (w[k] - 1))) return -1;  // a second bit
    found = int32_t(k * 64) + __builtin_ctzll(w[k]);
  }
  return found;
}
std::vector<int32_t> ids_of_bits(const std::vector<uint64_t>& words, int64_t vocab) {
  std::vector<int32_t> ids;
  for (size_t k = 0; k < words.size(); ++k)
    for (uint64_t w = words[k]; w; w &= w - 1) {
      const int64_t id = int64_t(k * 64) + __builtin_ctzll(w);
      if (id < vocab) ids.push_back(int32_t(id));
    }
  return ids;
}
}  // namespace

void sample_on_host(const std::vector<SampleSlot>& slots, const model::ForwardOutput& out, int64_t vocab,
                    DrawnTokens& res) {
  // Sampling is independent per sequence (each has its own generator): spread it over the cores.
  std::vector<int64_t> rows;
  for (size_t i = 0; i < slots.size(); ++i)
    if (slots[i].params) rows.push_back(int64_t(i));
#pragma omp parallel for schedule(dynamic, 4) if (rows.size() > 4)
  for (int64_t k = 0; k < int64_t(rows.size()); ++k) {
    const size_t i = size_t(rows[k]);
    const SampleSlot& s = slots[i];
    try {
      const int32_t only = single_allowed(s);
      if (only >= 0) {
        res.drawn[i].token = only;
        continue;
      }
      std::vector<int32_t> from_bits;
      if (s.allowed_bits) from_bits = ids_of_bits(*s.allowed_bits, vocab);
      const std::vector<int32_t>* allowed = s.allowed_bits ? &from_bits : s.allowed;
      res.drawn[i] = sample(host_row(out, i, vocab), vocab, *s.params, *s.history, s.prompt_len, *s.rng, allowed);
    } catch (const std::exception& e) {
      res.failed[i] = e.what();
    }
  }
}

void sample_on_device(backend::Backend& be, const std::vector<SampleSlot>& slots, model::ForwardOutput& out,
                      int64_t vocab, DrawnTokens& res) {
  backend::SamplingBatch batch;
  std::vector<size_t> batch_seq;  // sequence of each batch row
  std::vector<size_t> on_host;    // more top logprobs than the device gives
  for (size_t i = 0; i < slots.size(); ++i) {
    const SampleSlot& s = slots[i];
    if (!s.params) continue;
    const SamplingParams& p = *s.params;
    if (const int32_t only = single_allowed(s); only >= 0) {
      res.drawn[i].token = only;
      continue;
    }
    if (p.logprobs && p.top_logprobs > be.max_sample_top_logprobs()) {
      on_host.push_back(i);
      continue;
    }
    const PenaltyTokens* pen = nullptr;
    if (has_penalties(p)) {
      auto& owned = *s.penalties;
      if (!owned) owned = std::make_unique<PenaltyTokens>();
      owned->update(*s.history, s.prompt_len, p.repetition_penalty != 1.0f);
      pen = owned.get();
    }
    add_sampling_row(batch, out.logits_row0[i], p, s.seed, s.output_index, pen);
    if ((s.allowed && !s.allowed->empty()) || s.allowed_bits) {  // the mask is applied on the device
      try {
        if (s.allowed_bits) add_token_mask_bits(batch, *s.allowed_bits, vocab);
        else add_token_mask(batch, *s.allowed, vocab);
      } catch (const std::exception& e) {
        batch.rows.pop_back();
        res.failed[i] = e.what();
        continue;
      }
    }
    batch_seq.push_back(i);
  }
  // Rows the device cannot take: only theirs come to the host (before the device changes any row).
  for (size_t i : on_host) {
    const SampleSlot& s = slots[i];
    const int64_t row = out.logits_row0[i];
    try {
      Tensor h = be.to_host_f32(out.logits.rows(row, row + 1));
      std::vector<int32_t> from_bits;
      if (s.allowed_bits) from_bits = ids_of_bits(*s.allowed_bits, vocab);
      res.drawn[i] = sample(h.f32(), vocab, *s.params, *s.history, s.prompt_len, *s.rng,
                            s.allowed_bits ? &from_bits : s.allowed);
    } catch (const std::exception& e) {
      res.failed[i] = e.what();
    }
  }
  if (batch.rows.empty()) return;
  std::vector<backend::SampledRow> got = be.sample(out.logits, batch);  // throws: the whole step fails
  for (size_t k = 0; k < batch_seq.size(); ++k) {
    const size_t i = batch_seq[k];
    if (got[k].token < 0) {
      res.failed[i] = kNonFiniteLogits;  // or every logit -inf, which a sampled row cannot have
      continue;
    }
    res.drawn[i].token = got[k].token;
    if (slots[i].params->logprobs) {
      res.drawn[i].logprob = got[k].logprob;
      res.drawn[i].top_logprobs = std::move(got[k].top_logprobs);
    }
  }
}

}  // namespace ds::runtime
