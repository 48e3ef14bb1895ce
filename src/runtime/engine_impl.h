// The engine's implementation class (engine.cpp: the engine thread, scheduling, outputs; engine_spec.cpp: what
// speculative decoding adds to a step). Internal to ds_runtime: nothing outside those two files includes it.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/grammar_ahead.h"
#include "runtime/lock_step.h"
#include "runtime/model_runner.h"
#include "runtime/scheduler.h"
#include "runtime/spec_decode.h"
#include "runtime/step_cancel.h"
#include "util/host_buffer_pool.h"
#include "util/worker_pool.h"
#include "util/error.h"

namespace ds::tok {
class Tokenizer;
}

namespace ds::runtime::engine_internal {

// KV pool pages of each group for `c` (checked).
int32_t pool_pages(const EngineConfig& c);
// The tokens a forced continuation (first: its ids) or a grammar (its bitmask) allows next; neither
// while the output is free.
void constrain(const RequestState& r, SampleSlot& slot);

// A data-parallel group: the runners of its ranks (rank 0, which draws, first) and its scheduler with
// the KV pool they share. Without data parallelism the engine has one.
struct DpGroup {
  std::vector<ModelRunner*> runners;
  std::unique_ptr<Scheduler> sched;
  int64_t routed = 0;
  SpecPause spec;  // speculative decoding's pause rule (spec_decode.h)
};

// A group's draft step (speculative decoding), planned while its target step's tokens are taken in.
struct DraftPlan {
  StepInput in;                     // ForwardMode::DraftExtend
  std::vector<RequestState*> reqs;  // per sequence of in.batch
  std::vector<int32_t> budget;      // per sequence: the drafts it may keep (0: it only extends the MTP KV)
  int32_t drafting = 0;             // sequences that draft
  bool any() const { return !reqs.empty(); }
  // No sequence drafts: each only extends the MTP layer's KV (speculation pauses from the next step on).
  void fill_only() {
    for (auto& sc : in.batch.seqs) sc.logits = model::LogitsMode::None;
    std::fill(budget.begin(), budget.end(), 0);
    drafting = 0;
  }
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineConfig& cfg, std::vector<std::vector<ModelRunner*>> groups, const tok::Tokenizer& tok,
             std::unique_ptr<ModelRunner> owned = nullptr)
      : cfg_(cfg), owned_(std::move(owned)), tok_(tok), pages_(pool_pages(cfg)) {
    DS_CHECK(cfg_.context_length > 0, "context length must be > 0");
    DS_CHECK(cfg_.max_running_requests >= 1, "--max-running-requests must be >= 1");
    DS_CHECK(cfg_.max_prefill_tokens >= 1, "--max-prefill-tokens must be >= 1");
    DS_CHECK(!groups.empty(), "an engine needs at least one group of model runners");
    for (auto& runners : groups) {
      DS_CHECK(!runners.empty(), "an engine needs at least one model runner per group");
      for (const ModelRunner* r : runners)
        DS_CHECK(r->config().num_pages == pages_ && r->config().page_size == cfg_.page_size,
                 "runner KV pool ({} pages of {}) differs from the engine's ({} pages of {})", r->config().num_pages,
                 r->config().page_size, pages_, cfg_.page_size);
      num_runners_ += runners.size();
      groups_.push_back({std::move(runners), std::make_unique<Scheduler>(cfg_, pages_), 0, {}});
    }
    const model::Model& m0 = groups_[0].runners[0]->model();
    lock_step_ = m0.tensor_parallel().dp_attention();
    DS_CHECK(!lock_step_ || int(groups_.size()) == m0.tensor_parallel().dp,
             "DP attention over {} groups, but the engine was given {}", m0.tensor_parallel().dp, groups_.size());
    vocab_ = m0.config().vocab_size;
    spec_steps_ = cfg_.speculative_num_steps;
    DS_CHECK(spec_steps_ >= 0, "speculative steps must be >= 0, got {}", spec_steps_);
    for (const auto& g : groups_)
      for (const ModelRunner* r : g.runners)
        DS_CHECK(r->config().draft_steps == spec_steps_, "runner drafts {} tokens per step, the engine {}",
                 r->config().draft_steps, spec_steps_);
    publish_stats();
    pd_init();
    thread_ = std::thread([this] { loop(); });
  }
  ~EngineImpl() override {
    shutdown();
    pd_detach();
  }

  void submit(GenerateRequest req, OutputSink sink) override;
  void abort(const std::string& id) override {
    cancel_.abort(id);
    std::lock_guard lk(mu_);
    aborts_.push_back(id);
    cv_.notify_one();
  }
  void flush_cache(std::function<void(bool)> done) override;
  EngineStats stats() const override {
    EngineStats s;
    {
      std::lock_guard lk(stats_mu_);
      s = stats_;
    }
    if (pd_buffers_) {  // live: buffers come back on the transport's thread, between steps too
      const HostBufferPool::Stats b = pd_buffers_->stats();
      s.pd.buffer_lent_bytes = int64_t(b.lent_bytes);
      s.pd.buffer_kept_bytes = int64_t(b.kept_bytes);
    }
    return s;
  }
  const EngineConfig& config() const override { return cfg_; }
  void shutdown() override {
    cancel_.cancel_all();
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop();
  bool take_pending();  // inbox, aborts, flushes; false when stopping
  void run_step();
  StepInput make_step(const std::vector<Scheduler::Chunk>& plan, size_t group_ranks);
  // Tokens in, outputs out. Under speculative decoding it also plans the group's draft step (`draft`).
  void finish_plan(const std::vector<Scheduler::Chunk>& plan, StepOutput& res, DraftPlan* draft);
  // finish_plan under speculative decoding (engine_spec.cpp): slots per logits row, verify acceptance.
  void finish_spec_plan(const std::vector<Scheduler::Chunk>& plan, StepOutput& res, DraftPlan* draft);
  // One sampling slot per logits row of a chunk (speculative decoding: a verify chunk has 1 + drafts).
  void add_slots(RequestState& r, const Scheduler::Chunk& c, std::vector<SampleSlot>& sample);
  // The draft step of every group that planned one (runtime/spec_decode.h).
  void run_drafts(std::vector<DraftPlan>& drafts);
  // One lock step of every group's runners (and the other nodes' ranks, which get the inputs first).
  std::vector<std::optional<StepOutput>> run_groups(std::vector<LockStepGroup>& steps);
  size_t route(const RequestState& r);  // the DP group a new request joins
  int32_t total_waiting() const;
  std::vector<std::unique_ptr<RequestState>> take_everything();  // running ones first, then the queues
  // Appends, checks stops, outputs. With `ahead` (r's grammar walk of this step) the grammar's verdict is
  // its next step rather than the grammar's own answer.
  void accept_token(RequestState& r, SampleResult s, GrammarAhead* ahead = nullptr);
  // After a request's sampled token (or at arrival): the tokens its grammar forces next, accepted as
  // sampled ones are (engine_jump_forward.cpp); with `ahead`, the ones its walk found. True if any was.
  bool jump_forward(RequestState& r, GrammarAhead* ahead = nullptr);
  // The tokens r's grammar forces after `prev`, with `pending` tokens not yet appended to r (the walk)
  // before them; the grammar is left as it was.
  std::vector<int32_t> forced_tokens(RequestState& r, int32_t prev, size_t pending);
  // The grammar walk of a step's requests ahead of its outputs (grammar_ahead.h, engine_grammar_ahead.cpp):
  // per chunk of `plan`; empty (no walk: the serial phase does the grammar work) when fewer than
  // cfg_.grammar_ahead_min_requests of them have a grammar. `spec`: the rows are finish_spec_plan's.
  std::vector<GrammarAhead> walk_grammars(const std::vector<Scheduler::Chunk>& plan, const StepOutput& res, bool spec);
  // One request's walk through `rows` (a verify chain goes on while row j's token is draft j). Never throws.
  void walk_grammar(RequestState& r, std::span<const SampleResult> rows, bool chain, GrammarAhead& a) noexcept;
  // The walk's next step, for the token being accepted (rethrows what the grammar threw there).
  static GrammarAhead::Step& take_step(GrammarAhead& a);
  // After the serial phase: r's grammar back to the last token taken (the walk may have gone further).
  static void rewind_ahead(RequestState& r, const GrammarAhead& a);
  void deliver(RequestState& r, RequestOutput&& out);
  void end(std::unique_ptr<RequestState> r, FinishReason why, std::string error = {});
  void publish_stats();

  // ---- Prefill/decode disaggregation (engine_pd.cpp; cfg_.kv_handoff, nothing without it) ----
  struct Parked {  // decode side: a request waiting for its prompt's KV from the prefill server
    std::unique_ptr<RequestState> req;
    std::chrono::steady_clock::time_point deadline;
    std::optional<HostBytes> kv;  // arrived, waiting for pages
    std::chrono::steady_clock::time_point parked_at;
  };
  void pd_init();
  void pd_detach();
  void pd_check_submit(GenerateRequest& req) const;  // prefill side: one new token at most
  bool pd_park(std::unique_ptr<RequestState>& r);     // decode side: takes r, which waits for its KV
  bool pd_abort(const std::string& id);               // a parked request: ended
  void pd_poll();                                      // arrivals, joins, timeouts
  void pd_handoff(RequestState& r);                    // prefill side: a finished request's KV, pages still held
  bool pd_hands_off(const RequestState& r) const;      // prefill side: r's KV goes to a decode server next
  void take_drafts(RequestState& r, const std::vector<int32_t>& drafts);  // decode side: the prefill side's drafts
  // The drafts r may get now: its draft budget (spec_decode.h) once the pages for the next verify step and the
  // chain after it are reserved; 0 when either is not there.
  int32_t drafts_allowed(RequestState& r, bool by_output);
  void pd_on_end(RequestState& r, const RequestOutput& o);  // prefill side: a request that sent nothing
  void pd_take_parked(std::vector<std::unique_ptr<RequestState>>& into);
  std::vector<Parked> parked_;
  bool pd_wake_ = false;  // (mu_) something arrived
  EngineStats::PdStats pd_stats_;
  std::shared_ptr<HostBufferPool> pd_buffers_;  // page-locked buffers packed KV goes out of / arrives in

  EngineConfig cfg_;
  std::unique_ptr<ModelRunner> owned_;  // make_engine over a model: the runner made for it
  const tok::Tokenizer& tok_;
  int32_t pages_ = 0;  // KV pool pages of each group
  std::vector<DpGroup> groups_;
  size_t num_runners_ = 0;
  bool lock_step_ = false;  // DP attention: every group steps at once
  size_t next_group_ = 0;   // the router's turn among equally loaded groups
  int64_t vocab_ = 0;
  int32_t spec_steps_ = 0;  // speculative decoding: draft tokens per step (0: off)
  std::deque<std::mt19937_64> row_rngs_;  // this step's host generators of verify rows (stable addresses)
  StepCancel cancel_;  // stops a step between layers once all its requests are aborted
  LockStepThreads rank_threads_;  // the threads the ranks' steps run on (engine thread: the first)
  WorkerPool mask_pool_;  // the step's grammar masks, in parallel over requests (threads that sleep when idle)

  // Shared with other threads (mu_).
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<RequestState>> inbox_;
  std::vector<std::string> aborts_;
  std::vector<std::function<void(bool)>> flushes_;
  std::unordered_set<std::string> live_;  // submitted and not yet finished
  uint64_t arrivals_ = 0;
  bool stopping_ = false;
  std::string broken_;  // why the replica cannot run any more (a rank failed); empty while it can
  std::atomic<int32_t> waiting_{0};  // the scheduler's queue length, for submit's overload check

  // Counters (engine thread), published to stats_ under stats_mu_.
  mutable std::mutex stats_mu_;
  EngineStats stats_;
  double last_step_ms_ = 0, last_overhead_ms_ = 0, busy_ms_total_ = 0, forward_ms_total_ = 0;
  EngineStats::StepPhases phases_;
  int64_t prompt_total_ = 0, generated_total_ = 0, cached_total_ = 0, finished_total_ = 0, steps_ = 0;
  int64_t spec_verify_total_ = 0, spec_tokens_total_ = 0, spec_drafts_total_ = 0;
  int64_t jump_forward_total_ = 0;
  std::vector<int64_t> spec_drafted_at_, spec_accepted_at_;  // per draft position (EngineStats)
  std::thread thread_;
};

}  // namespace ds::runtime::engine_internal
