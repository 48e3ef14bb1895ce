// The measurements behind `dsserve bench model`, each a real step of a runtime::ModelRunner (forward,
// recorded steps, token draws: what the server runs) on a MeteredBackend: decode steps over a batch of
// long contexts, chunked prefill, the device's copy bandwidth (the HBM ceiling), and a per-op profile of
// one step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "perf/metered_backend.h"
#include "runtime/model_runner.h"

namespace ds::perf {

struct OpProfile {
  std::string op;
  int64_t calls = 0;
  double ms = 0;  // device + launch time with a sync after every call, the sync's own cost taken off
};

struct DecodeResult {
  int64_t layers = 0;
  int batch = 0, context = 0;
  double step_ms = 0, min_ms = 0, max_ms = 0;  // median, min, max over the measured steps
  double enqueue_ms = 0;   // median: forward start -> its logits readback begins (the host has queued it all)
  double moe_host_ms = 0;  // median host time inside moe_experts (launches, and its routing readback)
  double launch_ms = 0;    // median host time inside all other ops but the logits readback (they only launch)
  double weight_bytes = 0, kv_bytes = 0;  // what one step must read; KV = latent rows + indexer keys
  double experts_per_moe_layer = 0;
  int64_t ops = 0;  // backend calls per step
  std::vector<OpProfile> profile;  // with DecodeSetup::profile
};

struct DecodeSetup {
  int warmup = 3, steps = 10;
  int32_t page_size = 64;
  uint64_t seed = 1;
  bool profile = false;
  double sync_s = 0;  // MeteredBackend::synchronize()'s own cost, taken off profiled ops
  int32_t cuda_graph_max_bs = 0;  // the runner records (lazily: in the warm-up) steps of up to this batch
  // DP attention (model cut with dp > 1): every one of the dp groups decodes `batch` sequences in the same
  // steps; graphs are recorded before the warm-up, by every rank at once (never lazily under DP).
  int dp = 1;
};

// KV pools for `batch` sequences of `context` cached tokens, each on its own pages, with room for
// `extra` more; the cached rows hold random latents and indexer keys (a different arrangement per
// sequence and layer, so no two sequences select the same rows). Prefilling them would take minutes.
// Made once per batch and shared by the runners of the models measured on it (their pools are views).
struct DecodeCache {
  model::KVCache kv;
  int32_t pages_per_seq = 0;
};
DecodeCache make_decode_cache(const model::Model& m, MeteredBackend& be, int batch, int context, int extra,
                              int32_t page_size, DType latent_dtype, uint64_t seed);

// Warm-up steps, one step whose routing is read back to count the bytes, then the timed steps; every
// step decodes one random token per sequence at positions context, context + 1, ... through a runner on
// `cache`'s pools, each ending as a server's step does: greedy tokens drawn (on the device where the
// backend samples, only the ids come back).
DecodeResult run_decode(const model::Model& m, MeteredBackend& be, DecodeCache& cache, int batch, int context,
                        const DecodeSetup& s);

// Speculative decoding's two steps at `batch` sequences (median over the measured steps): the verify step
// (each sequence's last token + `drafts` drafts, the logits of all, hidden states kept, a greedy draw per
// row: what the server runs) and the draft step after it (the MTP layer over drafts + 1 positions, as
// when every draft was accepted, then drafts - 1 chained MTP steps). The model needs its MTP layer;
// `cache` room for (warmup + steps + 1) * (drafts + 1) + drafts more tokens per sequence.
struct SpecResult {
  int batch = 0, drafts = 0;
  double verify_ms = 0, draft_ms = 0;
};
SpecResult run_spec(const model::Model& m, MeteredBackend& be, DecodeCache& cache, int batch, int context, int drafts,
                    const DecodeSetup& s);

struct PrefillResult {
  int64_t layers = 0, tokens = 0, chunk = 0;
  double seconds = 0, flops = 0;
  std::vector<OpProfile> profile;
};
// One sequence of `tokens` random tokens in chunks of `chunk` (as the server's chunked prefill runs it),
// logits of the last token only. Runs taking under 0.5 s are repeated (up to 5, the median).
// Each chunk is one Extend step of a runner; the last draws the next token greedily.
PrefillResult run_prefill(const model::Model& m, MeteredBackend& be, int64_t tokens, int64_t chunk,
                          int32_t page_size, DType latent_dtype, uint64_t seed, bool profile, double sync_s);

// Device-to-device copy bandwidth through Backend::copy_cols, bytes read + written per second.
double measure_copy_bandwidth(MeteredBackend& be, int64_t bytes);
// Median cost of MeteredBackend::synchronize() with nothing queued, in seconds.
double measure_sync_cost(MeteredBackend& be);

}  // namespace ds::perf
