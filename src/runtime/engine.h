// The engine of one model replica: takes tokenized requests from any thread, runs them with
// continuous batching on its own thread (scheduler + model forward + sampling + detokenizing +
// stop checks) and streams each request's output back through a callback. The HTTP server
// talks only to this interface; it never sees tensors (DESIGN.md, invariants).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/forced_continuation.h"
#include "runtime/kv_handoff.h"
#include "runtime/grammar_constraint.h"
#include "runtime/sampler.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace ds::model {
class Model;
}
namespace ds::runtime {
class ModelRunner;
class RemoteRanks;
struct RunnerConfig;
}
namespace ds::tok {
class Tokenizer;
}

namespace ds::runtime {

enum class FinishReason : uint8_t {
  None,    // still running
  Stop,    // EOS, a stop token id or a stop string
  Length,  // max_new_tokens or the context length reached
  Abort,   // aborted by the client (abort(), disconnect) or by engine shutdown
  Error,   // the engine failed on this request (message in RequestOutput::error)
};
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

struct GenerateRequest {
  std::string id;               // unique among live requests (the server makes it)
  std::vector<int32_t> prompt;  // token ids, BOS included when the format wants it
  SamplingParams sampling;
  int32_t max_new_tokens = 128;            // >= 0; 0 = prefill only (the prompt gets cached)
  std::vector<std::string> stop;           // stop strings: generation ends there, the string is not emitted
  std::vector<int32_t> stop_token_ids;     // extra stop tokens (the EOS ids stop unless ignore_eos)
  bool skip_special_tokens = true;         // for the text of the output
  bool no_stop_trim = false;               // keep the matched stop string in the text (SGLang's flag)
  ForcedContinuation forced;               // output that must follow a trigger (tool_choice); empty: none
  GrammarConstraint grammar;               // structured output (JSON Schema, regex, EBNF); empty: none
  // Prefill/decode disaggregation (runtime/kv_handoff.h): the room this generation's KV goes to / comes
  // from; required on a server with EngineConfig::kv_handoff, ignored on others.
  std::optional<BootstrapRoom> bootstrap;
};

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // sampling.top_logprobs alternatives, most likely first
};

// One delivery to a request's sink: what is new since the previous one. The concatenation of
// all `text` pieces is the request's output text (stop strings removed, see GenerateRequest).
struct RequestOutput {
  std::vector<int32_t> token_ids;      // new output tokens
  std::string text;                    // new text; text that may begin a stop string is held back
  std::vector<TokenLogprob> logprobs;  // one per new token when sampling.logprobs
  bool finished = false;
  FinishReason finish_reason = FinishReason::None;
  std::optional<int32_t> matched_stop_token;  // the token id that stopped it (EOS or stop_token_ids)
  std::optional<std::string> matched_stop_str;
  std::string error;             // when finish_reason == Error
  int32_t prompt_tokens = 0;     // constant over the request
  int32_t completion_tokens = 0; // output tokens so far (including this delivery)
  int32_t cached_tokens = 0;     // prompt tokens served from the prefix cache (set from the first delivery)
  // Speculative decoding (SGLang's meta_info): decode steps so far, and the tokens they emitted and the
  // drafts they verified (accept length = spec_accept_tokens / spec_verify_ct).
  int32_t spec_verify_ct = 0;
  int32_t spec_accept_tokens = 0;
  int32_t spec_draft_tokens = 0;
  // Jump-forward decoding: output tokens so far that the grammar forced (appended without sampling).
  int32_t jump_forward_tokens = 0;
};

// Called on the engine thread; must return quickly and never block on the network (post the
// output to the connection's executor instead). Called at least once per request: the last call
// has finished == true, and no call follows it.
using OutputSink = std::function<void(RequestOutput&&)>;

// Why submit() refused a request: the HTTP status to answer with and an OpenAI-style message.
class RequestRejected : public ds::Error {
 public:
  RequestRejected(int http_status, const std::string& msg) : ds::Error(msg), status_(http_status) {}
  int http_status() const { return status_; }  // 400 (can never run: too long, bad ids), 503 (queue full)

 private:
  int status_;
};

enum class SchedulePolicy : uint8_t { Fcfs, Lpm };  // lpm = longest cached prefix first

struct EngineConfig {
  int32_t page_size = 64;                // tokens per KV page
  int64_t max_total_tokens = 0;          // KV pool capacity in tokens (rounded down to pages); required;
                                         // per DP group (each has a pool of its own)
  int32_t max_running_requests = 256;    // decoding + prefilling at once (per DP group)
  int32_t max_queued_requests = 4096;    // waiting beyond this -> 503
  int32_t chunked_prefill_size = 8192;   // prompt tokens of one request per step (-1: whole prompt)
  int32_t max_prefill_tokens = 16384;    // prompt tokens of all requests per step
  int32_t context_length = 0;            // prompt + output limit per request; required
  bool enable_radix_cache = true;
  SchedulePolicy schedule_policy = SchedulePolicy::Fcfs;
  uint64_t random_seed = 0;              // seeds requests that give no seed
  std::vector<int32_t> eos_token_ids;    // stop unless ignore_eos
  // Speculative decoding (runtime/spec_decode.h): draft tokens per step from the MTP layer; 0: off. The
  // runners must have the same RunnerConfig::draft_steps.
  int32_t speculative_num_steps = 0;
  // When the last kSpecWindow verify steps emitted fewer tokens per verifying request than this on average,
  // speculation pauses for kSpecPauseSteps steps, longer after tries that fail again (drafts that are not
  // kept cost more than they save; runtime/spec_decode.h, SpecPause); 0: never.
  double speculative_min_accept_length = 1.5;
  // Jump-forward decoding (grammar/jump_forward.h, engine_jump_forward.cpp): where a request's grammar
  // allows one continuation only, its tokens are appended at once and computed by the next forward as
  // one chunk. false: every token is sampled (--disable-regex-jump-forward, SGLang's flag).
  bool jump_forward = true;
  // After a step's draws, its grammar requests' grammar work (advance by the drawn token, jump-forward's
  // forced tokens: runtime/grammar_ahead.h) runs in parallel over requests on the mask pool once at least
  // this many requests of the step have a grammar; below it, on the engine thread with the outputs (a
  // loop over the pool costs more than a few requests' grammar work; 0: always there). Outputs are the same
  // either way.
  int32_t grammar_ahead_min_requests = 8;
  // Called once, on the engine thread, when the replica is broken (a tensor-parallel rank failed and
  // aborted the group: no later step can run). Every request then ends with the error and new ones are
  // refused with 503; the server is expected to stop (dsserve serve exits 1 naming the rank).
  std::function<void(const std::string& why)> on_fatal;
  // Multi-node, on node 0: the other nodes' ranks (runtime/remote_nodes.h), which take every step with the
  // runners here; null on one node. Must outlive the engine.
  RemoteRanks* remote = nullptr;
  // Prefill/decode disaggregation (runtime/kv_handoff.h, engine_pd.cpp): a prefill server's requests end
  // after their first token and send their prompt KV; a decode server's wait for it, then decode. null:
  // a plain server. Must outlive the engine.
  KvHandoff* kv_handoff = nullptr;
  // Prefill side: the most bytes of packed KV held at once (sending, or waiting for a decode server to ask);
  // a prompt whose KV would pass it fails its hand-off with that reason instead. 0: no limit.
  int64_t pd_kv_buffer_limit_bytes = 0;
};

// One data-parallel group's share of EngineStats (SGLang reports these per DP rank).
struct DpGroupStats {
  int32_t running = 0, queued = 0;
  int32_t num_pages = 0, used_pages = 0, cached_pages = 0, evictable_pages = 0;
  int64_t requests_routed = 0;  // requests the router gave this group, since start
};

// A consistent snapshot of the engine's state and counters (for /metrics, /get_server_info). Under data
// parallelism the counts are sums over the DP groups, and dp_groups has each group's.
struct EngineStats {
  int32_t running = 0;            // requests in the running batch (prefilling or decoding)
  int32_t queued = 0;             // waiting for admission (including retracted ones)
  int32_t num_pages = 0;          // KV pool size
  int32_t page_size = 0;
  int32_t used_pages = 0;         // held by requests or the prefix cache
  int32_t cached_pages = 0;       // held by the prefix cache (evictable ones included)
  int32_t evictable_pages = 0;
  int64_t prompt_tokens_total = 0;      // over finished + running requests, since start
  int64_t generation_tokens_total = 0;
  int64_t cached_tokens_total = 0;      // prompt tokens served from the prefix cache
  int64_t requests_total = 0;           // finished requests (any reason)
  int64_t retractions_total = 0;        // requests preempted for lack of KV pages
  int64_t steps_total = 0;
  double last_step_ms = 0;              // wall time of the last step
  double last_step_overhead_ms = 0;     // of which outside the model forward (scheduling, sampling, output)
  // Sums over all steps (differences of two snapshots give per-step averages over a window).
  double busy_ms_total = 0;             // wall time inside steps
  double forward_ms_total = 0;          // of which in the runner's forward (with device sampling: until it
                                        // has queued its last kernels; the GPU's tail counts as sampling)
  double sample_ms_total = 0;           // of which after the forward: sampling, detokenizing, stop checks, delivery
  // The step's phases, in order (sums over steps; with several runners, the slowest runner's forward,
  // masks and draws): planning (scheduling + the step's inputs), the forward as the host sees it (queued
  // on a device), grammar masks (while the device runs), the draws (with device sampling: the wait for
  // the device + the sampling kernel), output (tokens accepted, detokenized, delivered; = sample_ms_total),
  // the draft model's steps.
  struct StepPhases {
    double plan_ms = 0, forward_ms = 0, masks_ms = 0, draw_ms = 0, output_ms = 0, drafts_ms = 0;
  } phases;
  double cache_hit_rate = 0;            // cached / queried prompt tokens of the radix cache
  // Speculative decoding: decode steps of speculating requests, the tokens they emitted, the drafts they
  // verified (accept length = spec_tokens_total / spec_verify_total; SGLang's avg_spec_accept_length).
  int64_t spec_verify_total = 0, spec_tokens_total = 0, spec_drafts_total = 0;
  int64_t spec_pauses_total = 0;  // times a DP group paused speculation (too few drafts accepted)
  int64_t jump_forward_tokens_total = 0;  // output tokens a grammar forced (appended without a forward each)
  // Per draft position j (0-based: the j-th draft of a step): how often it was verified and accepted
  // (accepted[j] / drafted[j]: how much the (j+1)-th draft is worth; what --speculative-num-steps buys).
  std::vector<int64_t> spec_drafted_at, spec_accepted_at;
  double spec_accept_length() const { return spec_verify_total ? double(spec_tokens_total) / spec_verify_total : 0.0; }
  // Prefill/decode disaggregation. Prefill side: prompts whose KV was packed and handed to the transfer,
  // their bytes, the engine thread's time packing them (device -> host copies). Decode side: prompts whose KV
  // arrived and joined the batch, their bytes, the time from submission to joining (the prefill server's
  // queue + prefill + the transfer + waiting for pages) and the engine thread's time writing the rows.
  struct PdStats {
    int64_t kv_sent_total = 0, kv_sent_bytes_total = 0;
    double kv_pack_seconds_total = 0;
    int64_t kv_received_total = 0, kv_received_bytes_total = 0, kv_failed_total = 0;
    double kv_wait_seconds_total = 0, kv_unpack_seconds_total = 0;
    // Page-locked buffers of packed KV (gauges): out now (being sent, waiting for a decode server, or
    // waiting for pages here) and kept for reuse.
    int64_t buffer_lent_bytes = 0, buffer_kept_bytes = 0;
  } pd;
  std::vector<DpGroupStats> dp_groups;  // one per DP group when there are several; empty otherwise
  double token_usage() const { return num_pages ? double(used_pages - evictable_pages) / num_pages : 0.0; }
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Thread-safe. Throws RequestRejected for requests that can never run or when the queue is full;
  // otherwise the sink will be called until the request finishes.
  virtual void submit(GenerateRequest request, OutputSink sink) = 0;
  // Thread-safe; unknown or finished ids are ignored. The request's pages are freed at the next step
  // boundary and its sink gets a final output with FinishReason::Abort.
  virtual void abort(const std::string& id) = 0;
  // Thread-safe and never blocks: the prefix cache is dropped at the next step boundary, then `done`
  // runs on the engine thread (post to your own executor from it) with true, or false when nothing was
  // done (requests are running, or the engine is stopping: then it may run on the calling thread).
  virtual void flush_cache(std::function<void(bool flushed)> done) = 0;
  virtual EngineStats stats() const = 0;
  virtual const EngineConfig& config() const = 0;
  // Aborts everything still running or queued (their sinks get Abort) and stops the engine thread.
  virtual void shutdown() = 0;
};

// flush_cache, waiting for the answer (tests and tools; never on a thread that serves clients).
bool flush_cache_and_wait(Engine& engine);

// The engine over its model runners (runtime/model_runner.h): one per device of the replica, all with
// config's KV pool (max_total_tokens / page_size pages of page_size); several run every step in lock
// step and rank 0's tokens are taken. The tokenizer detokenizes outputs and matches stop strings; it and
// the runners must outlive the engine. Starts the engine thread.
std::unique_ptr<Engine> make_engine(const EngineConfig& config, std::vector<ModelRunner*> runners,
                                    const tok::Tokenizer& tokenizer);
// Data parallelism: one scheduler and KV pool per group of runners (a replica's ranks under --dp, or one
// DP-attention group's ranks), each group's rank 0 first; new requests go to the least loaded group
// (running + queued; ties in turn). Under DP attention (the runners' models are cut for it) every group
// steps together, idle ones with an empty batch, since the MoE layers exchange every group's tokens;
// otherwise a group with nothing to run sits a step out.
std::unique_ptr<Engine> make_dp_engine(const EngineConfig& config, std::vector<std::vector<ModelRunner*>> groups,
                                       const tok::Tokenizer& tokenizer);
// The engine with a runner of its own over `model` (tests and tools): `runner` gives everything but the
// pool's size and page size, which come from `config`.
std::unique_ptr<Engine> make_engine(const EngineConfig& config, const model::Model& model,
                                    const tok::Tokenizer& tokenizer);
std::unique_ptr<Engine> make_engine(const EngineConfig& config, const model::Model& model,
                                    const tok::Tokenizer& tokenizer, const RunnerConfig& runner);

}  // namespace ds::runtime
