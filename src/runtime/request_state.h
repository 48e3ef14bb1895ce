// One request inside the engine: its tokens, where its KV lives, its sampler state and its output
// stream. Owned by the scheduler; touched only on the engine thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "runtime/device_sampling.h"
#include "runtime/engine.h"
#include "runtime/output_text.h"
#include "runtime/radix_cache.h"

namespace ds::runtime {

struct RequestState {
  GenerateRequest in;
  OutputSink sink;
  uint64_t arrival = 0;        // submission order (FCFS)
  int32_t dp_group = 0;        // the data-parallel group (scheduler, KV pool) it runs in
  std::vector<int32_t> tokens;  // prompt, then every accepted token
  // Speculative decoding: tokens a draft proposed after `tokens`, waiting for the target to verify them.
  // Never part of `tokens` (so never computed, counted as output, or published to the radix cache, which
  // only sees `tokens`); dropped whenever the request leaves the running batch (Scheduler::release).
  std::vector<int32_t> draft;
  bool speculate = false;       // speculative decoding on and the request's draws allow it (spec_decode.h)
  int32_t spec_verify_ct = 0;   // its decode steps under speculative decoding
  int32_t spec_tokens = 0;      // tokens those steps emitted (accepted drafts + each step's own token)
  int32_t spec_drafts = 0;      // draft tokens they verified
  int32_t jump_forward_tokens = 0;  // output tokens its grammar forced (engine_jump_forward.cpp)
  int32_t prompt_len = 0;
  int32_t computed = 0;         // leading tokens whose KV is in `pages`
  std::vector<int32_t> pages;   // page table: one pool reference per page
  RadixCache::Node* locked = nullptr;  // the cached prefix this request pins (nullptr: none)
  int32_t cached_tokens = 0;    // prompt tokens served from the prefix cache at first admission
  bool admitted_once = false;
  bool counted = false;                      // prompt/cached tokens added to the engine's counters
  std::optional<RequestOutput> final_output;  // set when it ends; delivered after its pages are freed
  int32_t retractions = 0;
  std::mt19937_64 rng;                        // host sampling
  uint64_t seed = 0;                          // device sampling: draws are keyed on (seed, output index)
  std::unique_ptr<PenaltyTokens> penalties;   // device sampling with penalties
  std::optional<ContinuationTracker> forced;  // when in.forced is set
  std::optional<GrammarTracker> grammar;      // when in.grammar is set
  std::unique_ptr<OutputText> text;
  std::chrono::steady_clock::time_point arrived_at;
  bool kv_handed_off = false;  // prefill/decode disaggregation, prefill side: its KV (or failure) was sent

  int32_t output_len() const { return int32_t(tokens.size()) - prompt_len; }
  int32_t remaining() const { return int32_t(tokens.size()) - computed; }  // tokens to run before sampling
  bool prefilling() const { return remaining() > 1; }
};

}  // namespace ds::runtime
