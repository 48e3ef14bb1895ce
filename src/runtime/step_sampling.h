// Drawing the next token of every sequence of a step from its logits: on the backend's device when it
// can (Backend::sample: one call for the whole step, only ids and logprobs come back), else on the host
// in parallel over sequences. The runner calls it after each forward; the engine only describes each
// sequence's draw (SampleSlot) and never sees logits.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/forward_batch.h"
#include "runtime/device_sampling.h"
#include "runtime/sampler.h"

namespace ds::backend {
class Backend;
}

namespace ds::runtime {

// How to draw the token after one sequence of a step. The pointers are the request's own state and must
// stay valid for the step.
struct SampleSlot {
  const SamplingParams* params = nullptr;          // null: this sequence gets no token (a prefill chunk)
  const std::vector<int32_t>* history = nullptr;   // prompt + output so far (penalties)
  size_t prompt_len = 0;
  std::mt19937_64* rng = nullptr;                  // host draws
  uint64_t seed = 0;                               // device draws are keyed on (seed, output index)
  uint64_t output_index = 0;                       // index in the output of the token being drawn
  std::unique_ptr<PenaltyTokens>* penalties = nullptr;  // device draws with penalties (made on first use)
  const std::vector<int32_t>* allowed = nullptr;   // a forced continuation's next tokens (null: free)
  // Or a grammar's, as bits (bit i % 64 of word i / 64; ids past the words are not allowed; never all
  // clear): sent to the device as they are, turned into an id list only for host draws.
  const std::vector<uint64_t>* allowed_bits = nullptr;
};

// Greedy draws for sequences that carry no request state (offline generation, benchmarks): slots that
// point into this object, which must outlive the step.
struct GreedySampling {
  SamplingParams params;
  std::vector<int32_t> history;  // no penalties: never read
  std::mt19937_64 rng;
  GreedySampling() { params.temperature = 0.0f; }
  std::vector<SampleSlot> slots(size_t n) {
    SampleSlot s;
    s.params = &params;
    s.history = &history;
    s.rng = &rng;
    return std::vector<SampleSlot>(n, s);
  }
};

// Per sequence of the step: its token, or why it could not be drawn (the other sequences go on).
struct DrawnTokens {
  std::vector<SampleResult> drawn;
  std::vector<std::string> failed;
  explicit DrawnTokens(size_t n = 0) : drawn(n), failed(n) {}
};

// `out.logits` on the host (F32 [rows, vocab]).
void sample_on_host(const std::vector<SampleSlot>& slots, const model::ForwardOutput& out, int64_t vocab,
                    DrawnTokens& res);
// `out.logits` on `be`'s device, masked rows too (their allowed tokens go as a bitmask); rows the device
// does not take (more top logprobs than it gives) come to the host alone. Throws when the device call
// fails (the step fails).
void sample_on_device(backend::Backend& be, const std::vector<SampleSlot>& slots, model::ForwardOutput& out,
                      int64_t vocab, DrawnTokens& res);

}  // namespace ds::runtime
