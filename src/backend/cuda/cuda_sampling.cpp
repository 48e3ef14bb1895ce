// CudaBackend::sample: checks the batch, uploads the per-row parameters, penalty lists and token masks, runs the
// sampling kernel (k_sample.cu) over all rows at once and brings back only ids and logprobs.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace ds::backend::cuda {

namespace {
DevSampleRow dev_row(const SamplingRow& s) {
  DevSampleRow d;
  d.logits_row = s.logits_row;
  d.seed = s.seed;
  d.position = s.position;
  d.temperature = s.temperature;
  d.top_p = s.top_p;
  d.min_p = s.min_p;
  d.repetition_penalty = s.repetition_penalty;
  d.frequency_penalty = s.frequency_penalty;
  d.presence_penalty = s.presence_penalty;
  d.top_k = s.top_k;
  d.logprobs = s.logprobs ? 1 : 0;
  d.top_logprobs = s.logprobs ? s.top_logprobs : 0;
  d.penalty_begin = s.penalty_begin;
  d.penalty_count = s.penalty_count;
  d.mask_begin = s.mask_begin;
  return d;
}

void check_row(const SamplingRow& s, const SamplingBatch& b, int64_t rows, int64_t vocab) {
  DS_CHECK(s.logits_row >= 0 && s.logits_row < rows, "sample: logits row {} outside [0, {})", s.logits_row, rows);
  // The kernel relies on these (runtime::SamplingParams::validate() guarantees them for requests).
  DS_CHECK(std::isfinite(s.temperature) && s.temperature >= 0.0f, "sample: temperature {}", s.temperature);
  DS_CHECK(s.top_p > 0.0f && s.top_p <= 1.0f, "sample: top_p {} outside (0, 1]", s.top_p);
  DS_CHECK(s.min_p >= 0.0f && s.min_p <= 1.0f, "sample: min_p {} outside [0, 1]", s.min_p);
  DS_CHECK(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0.0f && std::isfinite(s.frequency_penalty) &&
               std::isfinite(s.presence_penalty),
           "sample: bad penalties");
  DS_CHECK(s.top_logprobs >= 0 && s.top_logprobs <= kSampleMaxTopLogprobs, "sample: top_logprobs {} outside [0, {}]",
           s.top_logprobs, kSampleMaxTopLogprobs);
  const int64_t end = int64_t(s.penalty_begin) + s.penalty_count;
  DS_CHECK(s.penalty_begin >= 0 && s.penalty_count >= 0 && end <= int64_t(b.penalty_ids.size()),
           "sample: penalty entries [{}, {}) outside the batch's {}", s.penalty_begin, end, b.penalty_ids.size());
  DS_CHECK(s.mask_begin == -1 || (s.mask_begin >= 0 && int64_t(s.mask_begin) + mask_words(vocab) <=
                                                          int64_t(b.token_masks.size())),
           "sample: token mask at word {} outside the batch's {} words", s.mask_begin, b.token_masks.size());
  for (int64_t e = s.penalty_begin; e < end; ++e)
    DS_CHECK(b.penalty_ids[size_t(e)] >= 0 && b.penalty_ids[size_t(e)] < vocab,
             "sample: penalty token {} outside the vocabulary of {}", b.penalty_ids[size_t(e)], vocab);
}
}  // namespace

std::vector<SampledRow> CudaBackend::sample(Tensor& logits, const SamplingBatch& b) {
  DS_CHECK(logits.defined() && logits.device() == Device::CUDA && logits.dtype() == DType::F32 && logits.ndim() == 2,
           "sample: expected CUDA F32 logits [rows, vocab], got {}", logits.defined() ? logits.describe() : "undefined");
  const int64_t rows = logits.dim(0), vocab = logits.dim(1), n = int64_t(b.rows.size());
  DS_CHECK(vocab >= 1 && vocab < (int64_t(1) << 31), "sample: vocabulary of {}", vocab);
  DS_CHECK(b.penalty_ids.size() == b.penalty_output_counts.size(), "sample: penalty ids and counts differ in length");
  if (n == 0) return {};
  std::vector<DevSampleRow> dev(static_cast<size_t>(n));
  std::vector<int64_t> used;
  int top_pitch = 0;
  for (int64_t i = 0; i < n; ++i) {
    const SamplingRow& s = b.rows[size_t(i)];
    check_row(s, b, rows, vocab);
    dev[size_t(i)] = dev_row(s);
    top_pitch = std::max(top_pitch, dev[size_t(i)].top_logprobs);
    used.push_back(s.logits_row);
  }
  std::sort(used.begin(), used.end());
  // Penalties are applied in place: a row named twice would get them twice.
  DS_CHECK(std::adjacent_find(used.begin(), used.end()) == used.end(), "sample: a logits row appears twice in the batch");

  // Results: token [n] | logprob [n] | top ids [n, pitch] | top logprobs [n, pitch], as 4-byte words.
  const int64_t words = n * (2 + 2 * int64_t(top_pitch));
  Tensor out = empty({words}, DType::I32);
  SampleArgs a;
  a.logits = logits.data<float>();
  a.vocab = int(vocab);
  a.rows = int(n);
  a.row = static_cast<const DevSampleRow*>(upload_bytes(dev.data(), dev.size() * sizeof(DevSampleRow)));
  a.penalty_ids = upload_i32(b.penalty_ids);
  a.penalty_counts = upload_i32(b.penalty_output_counts);
  // Token masks (structured outputs) change every step and are large (16 KB per row): staged straight into a
  // buffer of this call, not through upload_bytes' dedup cache, whose hash and host copy of ~1 MB at batch 64
  // cost more than the copy itself.
  Tensor masks;
  if (!b.token_masks.empty()) {
    masks = empty({int64_t(b.token_masks.size())}, DType::I32);
    stage_copy(masks.raw(), b.token_masks.data(), b.token_masks.size() * sizeof(uint32_t));
    a.masks = static_cast<const uint32_t*>(masks.raw());
  }
  a.token = out.data<int32_t>();
  a.logprob = reinterpret_cast<float*>(a.token + n);
  a.top_ids = a.token + 2 * n;
  a.top_logprobs = reinterpret_cast<float*>(a.top_ids + n * top_pitch);
  a.top_pitch = top_pitch;
  launch_sample(a, stream_);
  check_launch("sample");
  Tensor h = to_host(out);  // waits for the kernel

  const int32_t* w = h.data<int32_t>();
  std::vector<SampledRow> res(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    SampledRow& r = res[size_t(i)];
    r.token = w[i];
    std::memcpy(&r.logprob, w + n + i, sizeof(float));
    if (r.token < 0) continue;
    const int n_top = int(std::min<int64_t>(dev[size_t(i)].top_logprobs, vocab));  // as the kernel
    for (int j = 0; j < n_top; ++j) {
      float lp;
      std::memcpy(&lp, w + 2 * n + n * top_pitch + i * top_pitch + j, sizeof(float));
      if (lp == -INFINITY) break;  // masked out (structured outputs): not an alternative, as on the host
      r.top_logprobs.emplace_back(w[2 * n + i * top_pitch + j], lp);
    }
  }
  return res;
}

}  // namespace ds::backend::cuda
