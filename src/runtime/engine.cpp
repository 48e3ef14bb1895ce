// The engine thread: drains submissions and aborts, asks the scheduler for a step, hands it to the model
// runners (forward + draws), turns tokens into text with stop checks, and delivers outputs. Everything
// that touches requests or KV pages happens on this one thread; other threads only queue work under mu_.
#include "runtime/engine.h"
#include "runtime/engine_impl.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_set>

#include "dist/group.h"
#include "model/model.h"
#include "runtime/lock_step.h"
#include "runtime/model_runner.h"
#include "runtime/remote_nodes.h"
#include "runtime/scheduler.h"
#include "runtime/spec_decode.h"
#include "runtime/step_cancel.h"
#include "tokenizer/tokenizer.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::runtime {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Abort: return "abort";
    case FinishReason::Error: return "error";
  }
  return "?";
}

namespace engine_internal {

int32_t pool_pages(const EngineConfig& c) {
  DS_CHECK(c.page_size >= 1, "page size must be >= 1 (got {})", c.page_size);
  DS_CHECK(c.max_total_tokens >= c.page_size, "the KV pool must hold at least one page ({} tokens), got {}",
           c.page_size, c.max_total_tokens);
  return int32_t(c.max_total_tokens / c.page_size);
}


void EngineImpl::submit(GenerateRequest req, OutputSink sink) {
  pd_check_submit(req);
  const int64_t plen = int64_t(req.prompt.size());
  if (plen == 0) throw RequestRejected(400, "the prompt is empty (at least one token is needed)");
  auto check_ids = [&](const std::vector<int32_t>& ids, const char* where) {
    for (int32_t id : ids)
      if (id < 0 || id >= vocab_)
        throw RequestRejected(400, fmt::format("token id {} {} is outside the vocabulary [0, {})", id, where, vocab_));
  };
  check_ids(req.prompt, "in the prompt");
  if (req.max_new_tokens < 0) throw RequestRejected(400, "max_new_tokens must be >= 0");
  try {
    req.sampling.validate();
  } catch (const ds::Error& e) {
    throw RequestRejected(400, e.what());
  }
  if (plen + req.max_new_tokens > cfg_.context_length)
    throw RequestRejected(400, fmt::format("Requested token count exceeds the model's maximum context length of {} "
                                           "tokens. You requested a total of {} tokens: {} tokens from the input "
                                           "messages and {} tokens for the completion. Please reduce the number of "
                                           "tokens in the input messages or the completion to fit within the limit.",
                                           cfg_.context_length, plen + req.max_new_tokens, plen, req.max_new_tokens));
  const int64_t need_pages = (plen + req.max_new_tokens + cfg_.page_size - 1) / cfg_.page_size;
  if (need_pages > pages_)
    throw RequestRejected(400, fmt::format("the request needs up to {} KV tokens but the pool holds {} "
                                           "(raise --max-total-tokens or lower max_tokens)",
                                           plen + req.max_new_tokens, int64_t(pages_) * cfg_.page_size));
  auto r = std::make_unique<RequestState>();
  if (!req.forced.empty()) {
    check_ids(req.forced.trigger, "of the forced continuation");
    for (const auto& alt : req.forced.alternatives) check_ids(alt, "of the forced continuation");
    try {
      r->forced.emplace(req.forced);
    } catch (const ds::Error& e) {
      throw RequestRejected(400, e.what());
    }
  }
  if (!req.grammar.empty()) r->grammar.emplace(req.grammar);
  r->speculate = cfg_.speculative_num_steps > 0 && speculates(req);
  r->tokens = req.prompt;
  r->prompt_len = int32_t(plen);
  r->text = std::make_unique<OutputText>(tok_, req.skip_special_tokens, req.stop, req.no_stop_trim);
  r->arrived_at = std::chrono::steady_clock::now();
  r->sink = std::move(sink);
  std::lock_guard lk(mu_);
  if (stopping_) throw RequestRejected(503, "the server is shutting down");
  if (!broken_.empty()) throw RequestRejected(503, "the model cannot run: " + broken_);
  if (live_.count(req.id)) throw RequestRejected(400, fmt::format("request id '{}' is already in use", req.id));
  if (int64_t(inbox_.size()) + waiting_.load() >= cfg_.max_queued_requests)
    throw RequestRejected(503, fmt::format("too many requests waiting ({}); retry later", cfg_.max_queued_requests));
  r->arrival = arrivals_++;
  r->rng = make_rng(req.sampling, cfg_.random_seed + r->arrival);
  r->seed = request_seed(req.sampling, cfg_.random_seed + r->arrival);
  r->in = std::move(req);
  live_.insert(r->in.id);
  inbox_.push_back(std::move(r));
  cv_.notify_one();
}

void EngineImpl::flush_cache(std::function<void(bool)> done) {
  {
    std::lock_guard lk(mu_);
    if (!stopping_) {
      flushes_.push_back(std::move(done));
      cv_.notify_one();
      return;
    }
  }
  done(false);
}

bool EngineImpl::take_pending() {
  std::vector<std::unique_ptr<RequestState>> inbox;
  std::vector<std::string> aborts;
  std::vector<std::function<void(bool)>> flushes;
  {
    std::unique_lock lk(mu_);
    bool busy = false;
    for (const auto& g : groups_) busy = busy || g.sched->num_running() > 0 || g.sched->num_waiting() > 0;
    auto ready = [&] { return stopping_ || !inbox_.empty() || !aborts_.empty() || !flushes_.empty() || pd_wake_; };
    if (!busy && parked_.empty()) cv_.wait(lk, ready);
    else if (!busy) cv_.wait_for(lk, std::chrono::milliseconds(50), ready);  // parked requests time out
    pd_wake_ = false;
    if (stopping_) return false;
    inbox.swap(inbox_);
    // submit() counts inbox_ + waiting_: move the requests from one to the other in one step, so the
    // --max-queued-requests check never sees them in neither.
    waiting_ = total_waiting() + int32_t(inbox.size());
    aborts.swap(aborts_);
    flushes.swap(flushes_);
  }
  for (auto& r : inbox) {
    const size_t g = route(*r);
    r->dp_group = int32_t(g);
    ++groups_[g].routed;
    if (pd_park(r)) continue;
    // What the grammar forces from the start (`{"name": "` of a fixed-key schema) is prefilled with the
    // prompt. (Not under disaggregation: the prefill server sends the prompt's KV and one sampled token.)
    if (!cfg_.kv_handoff) jump_forward(*r);
    if (r->final_output) {  // the grammar forced the whole output
      const FinishReason why = r->final_output->finish_reason;
      end(std::move(r), why);
      continue;
    }
    groups_[g].sched->add(std::move(r));
  }
  for (const auto& id : aborts)
    if (!pd_abort(id))
      for (auto& g : groups_)
        if (auto r = g.sched->remove(id)) {
          end(std::move(r), FinishReason::Abort);
          break;
        }
  pd_poll();
  if (!flushes.empty()) {
    bool flushed = true;  // all or none: a group with requests keeps its cache, so the others keep theirs
    for (const auto& g : groups_) flushed = flushed && g.sched->num_running() == 0 && g.sched->num_waiting() == 0;
    if (flushed)
      for (auto& g : groups_) flushed = g.sched->flush_cache() && flushed;
    publish_stats();
    for (auto& f : flushes) f(flushed);
  }
  return true;
}

void EngineImpl::loop() {
  while (take_pending()) {
    try {
      run_step();
    } catch (const model::StepCancelled&) {
      // Every request of the step was aborted (take_pending ends them) or the engine is stopping.
    } catch (const dist::GroupAborted& e) {
      // A rank failed: the group is gone and no step can run again. End everything, refuse new work.
      spdlog::critical("engine: {}", e.what());
      std::vector<std::unique_ptr<RequestState>> all = take_everything();
      {
        std::lock_guard lk(mu_);
        broken_ = e.what();
        for (auto& r : inbox_) all.push_back(std::move(r));
        inbox_.clear();
      }
      for (auto& r : all) end(std::move(r), FinishReason::Error, e.what());
      publish_stats();
      if (cfg_.on_fatal) cfg_.on_fatal(e.what());
    } catch (const std::exception& e) {
      // A failed forward fails the running requests, never the server; queued ones go on.
      // (Under data parallelism the step of every group fails: it ran as one.)
      spdlog::error("engine step failed: {}", e.what());
      for (auto& g : groups_) {
        const int32_t running = g.sched->num_running();
        auto all = g.sched->take_all();  // running ones first, then the queue in order
        for (int32_t i = 0; i < int32_t(all.size()); ++i) {
          if (i < running) end(std::move(all[i]), FinishReason::Error, e.what());
          else g.sched->add(std::move(all[i]));
        }
      }
    }
  }
  // Shutdown: everything still here ends as aborted; nothing is left waiting.
  std::vector<std::unique_ptr<RequestState>> rest = take_everything();
  std::vector<std::function<void(bool)>> flushes;
  {
    std::lock_guard lk(mu_);
    for (auto& r : inbox_) rest.push_back(std::move(r));
    inbox_.clear();
    flushes.swap(flushes_);
  }
  for (auto& r : rest) end(std::move(r), FinishReason::Abort);
  for (auto& f : flushes) f(false);
}

void EngineImpl::run_step() {
  Timer step_timer;
  std::vector<std::vector<Scheduler::Chunk>> plans;
  bool any = false;
  for (auto& g : groups_) {
    plans.push_back(g.sched->schedule());
    any = any || !plans.back().empty();
  }
  waiting_ = total_waiting();  // admissions and retractions of this step, for submit()'s queue check
  if (!any) {
    for (auto& g : groups_)
      if (g.sched->num_running() == 0 && g.sched->num_waiting() > 0) {
        // Cannot happen with validated requests (one always fits an otherwise empty pool); never spin.
        for (auto& r : g.sched->take_all()) end(std::move(r), FinishReason::Error, "the request cannot be scheduled");
      }
    publish_stats();
    return;
  }
  row_rngs_.clear();
  std::vector<LockStepGroup> steps(groups_.size());
  std::vector<int32_t> dp_tokens;
  std::vector<std::string> step_ids;
  for (size_t g = 0; g < groups_.size(); ++g) {
    steps[g].runners = groups_[g].runners;
    int32_t tokens = 0;
    if (!plans[g].empty()) {
      steps[g].input = make_step(plans[g], groups_[g].runners.size());
      for (const auto& c : plans[g]) {
        step_ids.push_back(c.req->in.id);
        tokens += c.len;
      }
    } else if (lock_step_) {
      steps[g].input.emplace();  // an idle group's step: it only takes part in the MoE exchanges
    }
    dp_tokens.push_back(tokens);
  }
  if (lock_step_) {
    // Every group decoding, verifying drafts (speculative decoding) or idle: the step may run recorded,
    // each group padded to the bucket of the largest group's batch, and to the verify rows when some group
    // verifies (step_recorder.h). Every group must read the same verdict: it is made here, once.
    bool uniform = true, any_verify = false;
    int32_t most = 0;
    const int32_t q = spec_steps_ > 0 ? spec_steps_ + 1 : 0;
    for (size_t g = 0; g < groups_.size(); ++g)
      if (!plans[g].empty()) {
        most = std::max(most, int32_t(plans[g].size()));
        if (steps[g].input->mode == ForwardMode::Decode) continue;
        if (q > 1 && verify_like_rows(steps[g].input->batch, q)) any_verify = true;
        else uniform = false;
      }
    for (auto& st : steps) {
      st.input->batch.dp_tokens = dp_tokens;
      st.input->batch.dp_decode_bs = uniform ? most : 0;
      st.input->batch.dp_verify_q = uniform && any_verify ? q : 0;
      if (uniform && st.input->batch.seqs.empty()) st.input->mode = ForwardMode::Decode;
    }
  }
  // Checked between layers of an op-by-op forward (a recorded decode step runs whole). Several ranks would
  // each read the flag at their own moment and could stop at different layers, leaving the others in a
  // collective: with several runners a step always runs whole (deciding it collectively: later).
  StepCancel::Scope cancellable(cancel_, std::move(step_ids));
  if (num_runners_ == 1 && !cfg_.remote) steps[0].input->batch.cancel = cancel_.flag();
  phases_.plan_ms += step_timer.seconds() * 1e3;
  std::vector<std::optional<StepOutput>> res = run_groups(steps);
  double fwd_ms = 0, masks_ms = 0, draw_ms = 0;
  for (const auto& r : res)
    if (r) {
      fwd_ms = std::max(fwd_ms, r->forward_ms);
      masks_ms = std::max(masks_ms, r->masks_ms);
      draw_ms = std::max(draw_ms, r->draw_ms);
    }
  phases_.forward_ms += fwd_ms;
  phases_.masks_ms += masks_ms;
  phases_.draw_ms += draw_ms;
  Timer sample_timer;
  std::vector<DraftPlan> drafts(spec_steps_ > 0 ? groups_.size() : 0);
  for (size_t g = 0; g < groups_.size(); ++g)
    if (!plans[g].empty()) finish_plan(plans[g], *res[g], drafts.empty() ? nullptr : &drafts[g]);
  phases_.output_ms += sample_timer.seconds() * 1e3;
  if (!drafts.empty()) {
    Timer draft_timer;
    run_drafts(drafts);
    fwd_ms += draft_timer.seconds() * 1e3;  // the draft model's forward counts as forward time
    phases_.drafts_ms += draft_timer.seconds() * 1e3;
  }
  ++steps_;
  last_step_ms_ = step_timer.seconds() * 1e3;
  last_overhead_ms_ = last_step_ms_ - fwd_ms;
  busy_ms_total_ += last_step_ms_;
  forward_ms_total_ += fwd_ms;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (const auto& c : plans[g])
      if (c.req->final_output) {
        pd_handoff(*c.req);
        end(groups_[g].sched->finish(*c.req), c.req->final_output->finish_reason);
      }
  publish_stats();
}

void EngineImpl::finish_plan(const std::vector<Scheduler::Chunk>& plan, StepOutput& res, DraftPlan* draft) {
  std::vector<SampleResult>& drawn = res.tokens.drawn;
  std::vector<std::string>& failed = res.tokens.failed;
  Scheduler& sched = *groups_[size_t(plan[0].req->dp_group)].sched;
  if (spec_steps_ > 0) return finish_spec_plan(plan, res, draft);
  std::vector<GrammarAhead> ahead = walk_grammars(plan, res, false);
  for (size_t i = 0; i < plan.size(); ++i) {
    RequestState& r = *plan[i].req;
    GrammarAhead* a = ahead.empty() || !ahead[i].walked ? nullptr : &ahead[i];
    sched.chunk_done(r, plan[i].len);
    if (!failed[i].empty()) {
      r.final_output.emplace();
      r.final_output->finished = true;
      r.final_output->finish_reason = FinishReason::Error;
      r.final_output->error = failed[i];
    } else if (plan[i].logits) {
      accept_token(r, std::move(drawn[i]), a);
      jump_forward(r, a);
      if (a) rewind_ahead(r, *a);
    } else if (r.remaining() == 0) {  // max_new_tokens == 0: the prompt is cached, nothing to sample
      r.final_output.emplace();
      r.final_output->finished = true;
      r.final_output->finish_reason = FinishReason::Length;
    }
  }
}

size_t EngineImpl::route(const RequestState& r) {
  if (groups_.size() == 1) return 0;
  // The least loaded group (running + queued); among equals, the next in turn.
  size_t least = next_group_ % groups_.size();
  auto load = [&](size_t g) { return groups_[g].sched->num_running() + groups_[g].sched->num_waiting(); };
  for (size_t k = 1; k < groups_.size(); ++k) {
    const size_t g = (next_group_ + k) % groups_.size();
    if (load(g) < load(least)) least = g;
  }
  // Prefix-aware (sgl-router's cache-aware policy, simplified): the group whose radix cache holds the
  // longest prefix of the prompt, when that is at least a page and the group is not much busier than the
  // least loaded one (balance first when it is).
  size_t cached = least;
  int64_t longest = 0;
  const auto prompt = std::span<const int32_t>(r.tokens).first(r.tokens.size() - 1);
  for (size_t g = 0; g < groups_.size(); ++g)
    if (const RadixCache* c = groups_[g].sched->cache()) {
      const int64_t n = c->cached_prefix_tokens(prompt);
      if (n > longest) longest = n, cached = g;
    }
  const int32_t slack = std::max<int32_t>(4, load(least) / 4);
  if (longest >= cfg_.page_size && load(cached) <= load(least) + slack) return cached;
  next_group_ = least + 1;
  return least;
}

int32_t EngineImpl::total_waiting() const {
  int32_t n = 0;
  for (const auto& g : groups_) n += g.sched->num_waiting();
  return n;
}

std::vector<std::unique_ptr<RequestState>> EngineImpl::take_everything() {
  std::vector<std::unique_ptr<RequestState>> all;
  for (auto& g : groups_)
    for (auto& r : g.sched->take_all()) all.push_back(std::move(r));
  pd_take_parked(all);
  return all;
}

void constrain(const RequestState& r, SampleSlot& slot) {
  if (r.forced && !r.forced->allowed().empty()) slot.allowed = &r.forced->allowed();
  else if (r.grammar) slot.allowed_bits = r.grammar->allowed_bits();
}

StepInput EngineImpl::make_step(const std::vector<Scheduler::Chunk>& plan, size_t group_ranks) {
  StepInput in;
  in.batch.seqs.reserve(plan.size());
  in.sample.reserve(plan.size());
  in.sample_per_row = spec_steps_ > 0;
  in.keep_hidden = spec_steps_ > 0;  // the MTP layer reads them (finish_spec_plan), for every request
  for (const auto& c : plan) {
    RequestState& r = *c.req;
    model::SequenceChunk sc;
    sc.tokens.assign(r.tokens.begin() + c.begin, r.tokens.begin() + c.begin + (c.len - c.drafts));
    sc.tokens.insert(sc.tokens.end(), r.draft.begin(), r.draft.begin() + c.drafts);
    sc.start_pos = c.begin;
    sc.page_table = r.pages;
    sc.logits = !c.logits ? model::LogitsMode::None : c.drafts ? model::LogitsMode::All : model::LogitsMode::Last;
    in.batch.seqs.push_back(std::move(sc));
    if (!r.counted) {  // first time scheduled: its prompt and cache hit count once
      r.counted = true;
      prompt_total_ += r.prompt_len;
      cached_total_ += r.cached_tokens;
    }
    if (in.sample_per_row) {
      add_slots(r, c, in.sample);
      continue;
    }
    SampleSlot slot;
    if (c.logits) {
      slot.params = &r.in.sampling;
      slot.history = &r.tokens;
      slot.prompt_len = size_t(r.prompt_len);
      slot.rng = &r.rng;
      slot.seed = r.seed;
      slot.output_index = uint64_t(r.output_len());
      slot.penalties = &r.penalties;
      constrain(r, slot);
    }
    in.sample.push_back(slot);
  }
  in.mode = classify_step(in.batch);
  // The grammar masks this step samples under: computed while the forward runs on the device (a group of
  // one runner; with several ranks, every rank reads the same masks, so they are made before the step).
  std::vector<GrammarTracker*> stale;
  for (const auto& c : plan)
    if (c.logits && c.req->grammar && c.req->grammar->needs_prepare()) stale.push_back(&*c.req->grammar);
  if (!stale.empty()) {
    auto prepare = [stale, pool = &mask_pool_] {
      std::vector<std::exception_ptr> errors(stale.size());  // none may leave the parallel loop
      pool->parallel_for(stale.size(), [&](size_t k) {
        try {
          stale[k]->prepare();
        } catch (...) {
          errors[k] = std::current_exception();
        }
      });
      for (auto& e : errors)
        if (e) std::rethrow_exception(e);  // the step fails, as when the device fails
    };
    if (group_ranks == 1) in.before_sampling = std::move(prepare);
    else prepare();
  }
  return in;
}

std::vector<std::optional<StepOutput>> EngineImpl::run_groups(std::vector<LockStepGroup>& steps) {
  std::function<void()> remote_wait;
  if (cfg_.remote) {  // the other nodes' ranks get the step before these start it
    std::vector<const StepInput*> sent;
    for (const auto& st : steps) sent.push_back(st.input ? &*st.input : nullptr);
    cfg_.remote->send(sent);
    remote_wait = [this] { cfg_.remote->wait(); };
  }
  return run_lock_step(steps, remote_wait, &rank_threads_);
}

void EngineImpl::accept_token(RequestState& r, SampleResult s, GrammarAhead* ahead) {
  const auto& in = r.in;
  r.tokens.push_back(s.token);
  if (r.forced) r.forced->accept(s.token, r.tokens, size_t(r.prompt_len));
  const GrammarAhead::Step* walked = ahead && r.grammar ? &take_step(*ahead) : nullptr;
  if (r.grammar && !(walked ? walked->allowed : r.grammar->accept(s.token, r.tokens, size_t(r.prompt_len)))) {
    r.final_output.emplace();
    r.final_output->finished = true;
    r.final_output->finish_reason = FinishReason::Error;
    r.final_output->error = fmt::format("token {} is not allowed by the request's grammar", s.token);
    return;
  }
  ++generated_total_;
  RequestOutput o;
  o.token_ids.push_back(s.token);
  if (in.sampling.logprobs) o.logprobs.push_back({s.token, s.logprob, std::move(s.top_logprobs)});
  const bool eos = !in.sampling.ignore_eos &&
                   std::find(cfg_.eos_token_ids.begin(), cfg_.eos_token_ids.end(), s.token) != cfg_.eos_token_ids.end();
  const bool stop_id = std::find(in.stop_token_ids.begin(), in.stop_token_ids.end(), s.token) != in.stop_token_ids.end();
  // Its stop token, even under ignore_eos.
  const bool grammar_end = r.grammar && (walked ? walked->terminated : r.grammar->terminated());
  if (eos || stop_id || grammar_end) {
    // The stop token's own text is not part of the output (SGLang trims it) unless no_stop_trim.
    if (in.no_stop_trim) o.text = r.text->push(s.token).text;
    o.text += r.text->finish();
    o.finish_reason = FinishReason::Stop;
    o.matched_stop_token = s.token;
  } else {
    OutputText::Step t = r.text->push(s.token);
    o.text = std::move(t.text);
    if (t.matched) {
      o.finish_reason = FinishReason::Stop;
      o.matched_stop_str = std::move(t.matched);
    } else if (r.output_len() >= in.max_new_tokens || int64_t(r.tokens.size()) >= cfg_.context_length) {
      o.text += r.text->finish();
      o.finish_reason = FinishReason::Length;
    }
  }
  o.finished = o.finish_reason != FinishReason::None;
  if (o.finished) r.final_output = std::move(o);  // delivered by end(), once its pages are free
  else deliver(r, std::move(o));
}

void EngineImpl::deliver(RequestState& r, RequestOutput&& out) {
  out.prompt_tokens = r.prompt_len;
  out.completion_tokens = r.output_len();
  out.cached_tokens = r.cached_tokens;
  out.spec_verify_ct = r.spec_verify_ct;
  out.spec_accept_tokens = r.spec_tokens;
  out.spec_draft_tokens = r.spec_drafts;
  out.jump_forward_tokens = r.jump_forward_tokens;
  try {
    r.sink(std::move(out));
  } catch (const std::exception& e) {
    spdlog::error("output sink of request {} threw: {}", r.in.id, e.what());
  }
}

void EngineImpl::end(std::unique_ptr<RequestState> r, FinishReason why, std::string error) {
  // The request holds no pages any more: publish that before the client hears it finished, so a
  // client that checks /get_server_info right after sees the pages free.
  RequestOutput o;
  if (r->final_output) {
    o = std::move(*r->final_output);
  } else {  // aborted, failed or shut down: held-back text (a possible stop prefix) is dropped
    o.finished = true;
    o.finish_reason = why;
    o.error = std::move(error);
  }
  pd_on_end(*r, o);
  ++finished_total_;
  {
    std::lock_guard lk(mu_);
    live_.erase(r->in.id);
  }
  publish_stats();
  deliver(*r, std::move(o));
}

void EngineImpl::publish_stats() {
  EngineStats s;
  for (const auto& g : groups_) {
    const Scheduler& sc = *g.sched;
    DpGroupStats d;
    d.running = sc.num_running();
    d.queued = sc.num_waiting();
    d.num_pages = sc.pool().num_pages();
    d.used_pages = sc.pool().num_used();
    if (const RadixCache* c = sc.cache()) {
      d.cached_pages = c->cached_pages();
      d.evictable_pages = c->evictable_pages();
    }
    d.requests_routed = g.routed;
    s.running += d.running;
    s.num_pages += d.num_pages;
    s.used_pages += d.used_pages;
    s.cached_pages += d.cached_pages;
    s.evictable_pages += d.evictable_pages;
    s.retractions_total += sc.retractions();
    if (groups_.size() > 1) s.dp_groups.push_back(d);
  }
  s.page_size = cfg_.page_size;
  s.prompt_tokens_total = prompt_total_;
  s.generation_tokens_total = generated_total_;
  s.cached_tokens_total = cached_total_;
  s.requests_total = finished_total_;
  s.steps_total = steps_;
  s.last_step_ms = last_step_ms_;
  s.last_step_overhead_ms = last_overhead_ms_;
  s.busy_ms_total = busy_ms_total_;
  s.forward_ms_total = forward_ms_total_;
  s.sample_ms_total = phases_.output_ms;  // the output phase, under its older name
  s.phases = phases_;
  s.cache_hit_rate = prompt_total_ ? double(cached_total_) / double(prompt_total_) : 0.0;
  s.spec_verify_total = spec_verify_total_;
  s.spec_tokens_total = spec_tokens_total_;
  s.spec_drafts_total = spec_drafts_total_;
  s.spec_drafted_at = spec_drafted_at_;
  s.spec_accepted_at = spec_accepted_at_;
  s.jump_forward_tokens_total = jump_forward_total_;
  s.pd = pd_stats_;  // (the buffer gauges are read live by stats())
  for (const auto& g : groups_) s.spec_pauses_total += g.spec.pauses();
  size_t inbox = 0;
  {
    std::lock_guard lk(mu_);
    inbox = inbox_.size();
  }
  const int32_t waiting = total_waiting();
  s.queued = waiting + int32_t(inbox) + int32_t(parked_.size());  // (decode side: parked ones wait for their KV)
  waiting_ = waiting;
  std::lock_guard lk(stats_mu_);
  stats_ = s;
}

}  // namespace engine_internal

using engine_internal::EngineImpl;
using engine_internal::pool_pages;

std::unique_ptr<Engine> make_engine(const EngineConfig& config, std::vector<ModelRunner*> runners,
                                    const tok::Tokenizer& tokenizer) {
  return std::make_unique<EngineImpl>(config, std::vector<std::vector<ModelRunner*>>{std::move(runners)}, tokenizer);
}

std::unique_ptr<Engine> make_dp_engine(const EngineConfig& config, std::vector<std::vector<ModelRunner*>> groups,
                                       const tok::Tokenizer& tokenizer) {
  return std::make_unique<EngineImpl>(config, std::move(groups), tokenizer);
}

std::unique_ptr<Engine> make_engine(const EngineConfig& config, const model::Model& model,
                                    const tok::Tokenizer& tokenizer, const RunnerConfig& runner) {
  RunnerConfig rc = runner;
  rc.num_pages = pool_pages(config);
  rc.page_size = config.page_size;
  auto owned = std::make_unique<ModelRunner>(rc, model);
  ModelRunner* r = owned.get();
  return std::make_unique<EngineImpl>(config, std::vector<std::vector<ModelRunner*>>{{r}}, tokenizer, std::move(owned));
}

bool flush_cache_and_wait(Engine& engine) {
  auto result = std::make_shared<std::promise<bool>>();
  std::future<bool> f = result->get_future();
  engine.flush_cache([result](bool flushed) { result->set_value(flushed); });
  return f.get();
}

std::unique_ptr<Engine> make_engine(const EngineConfig& config, const model::Model& model,
                                    const tok::Tokenizer& tokenizer) {
  return make_engine(config, model, tokenizer, RunnerConfig{});
}

}  // namespace ds::runtime
