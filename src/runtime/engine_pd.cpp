// What prefill/decode disaggregation adds to the engine (runtime/kv_handoff.h). Prefill side: a request ends
// after its first token; before its pages are released its prompt's KV is packed (kv_pack.h) and handed to
// the transfer, so the pages go back to the pool (and the radix cache) at once. Decode side: a request gets
// pages for its prompt and is parked outside the scheduler until its KV arrives; then the rows are written
// into those pages, the prefill server's first token is taken as its own, and it decodes as if it had
// prefilled itself. A parked request that waits longer than the transfer timeout ends with an error and
// gives its pages back.
#include <algorithm>

#include "runtime/engine_impl.h"
#include "runtime/kv_pack.h"
#include "util/log.h"

namespace ds::runtime {

const char* disagg_mode_name(DisaggMode m) {
  switch (m) {
    case DisaggMode::Null: return "null";
    case DisaggMode::Prefill: return "prefill";
    case DisaggMode::Decode: return "decode";
  }
  return "?";
}

namespace engine_internal {

namespace {
bool is_mode(const EngineConfig& c, DisaggMode m) { return c.kv_handoff && c.kv_handoff->mode() == m; }

// Page-locked buffers kept for reuse once returned (those lent are not counted): a few prompts' KV. Beyond it
// returned buffers are freed, so pinned memory falls back when the load does.
constexpr size_t kKeepHostBufferBytes = size_t(4) << 30;
}  // namespace

void EngineImpl::pd_init() {
  if (!cfg_.kv_handoff) return;
  // Any group's backend makes page-locked memory every GPU of the process copies directly (portable).
  backend::Backend* be = &groups_[0].runners[0]->backend();
  const bool limited = cfg_.kv_handoff->mode() == DisaggMode::Prefill && cfg_.pd_kv_buffer_limit_bytes > 0;
  pd_buffers_ = HostBufferPool::make([be](size_t n) { return be->alloc_host_bytes(n); }, kKeepHostBufferBytes,
                                     limited ? size_t(cfg_.pd_kv_buffer_limit_bytes) : SIZE_MAX);
  if (cfg_.kv_handoff->mode() == DisaggMode::Decode)
    cfg_.kv_handoff->set_buffers([pool = pd_buffers_](size_t n) { return pool->take(n); });
  cfg_.kv_handoff->set_wakeup([this] {
    std::lock_guard lk(mu_);
    pd_wake_ = true;
    cv_.notify_one();
  });
}

void EngineImpl::pd_detach() {
  if (!cfg_.kv_handoff) return;
  cfg_.kv_handoff->set_wakeup({});
  cfg_.kv_handoff->set_buffers({});  // (buffers out keep working: the pool frees them when they come back)
}

void EngineImpl::pd_check_submit(GenerateRequest& req) const {
  // A request without bootstrap fields (a health check, a client asking directly) is served whole here.
  if (!cfg_.kv_handoff || !req.bootstrap) return;
  // The prefill side computes the prompt and the first token; the decode side does the rest.
  if (cfg_.kv_handoff->mode() == DisaggMode::Prefill) req.max_new_tokens = std::min(req.max_new_tokens, 1);
}

bool EngineImpl::pd_park(std::unique_ptr<RequestState>& r) {
  if (!is_mode(cfg_, DisaggMode::Decode) || !r->in.bootstrap) return false;
  // Speculation goes on here: the prompt's MTP KV came with the target's (the prefill server extended
  // the MTP layer over the whole prompt, engine_spec.cpp), and the first decode step here, which has no
  // drafts, keeps the hidden state the first draft step reads.
  cfg_.kv_handoff->expect(*r->in.bootstrap);
  groups_[size_t(r->dp_group)].sched->reserve_prompt(*r);  // may fail for now: pd_poll retries
  const auto timeout = std::chrono::duration<double>(cfg_.kv_handoff->timeout_s());
  const auto now = std::chrono::steady_clock::now();
  parked_.push_back({std::move(r), now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout), {}, now});
  return true;
}

bool EngineImpl::pd_abort(const std::string& id) {
  for (auto it = parked_.begin(); it != parked_.end(); ++it)
    if (it->req->in.id == id) {
      std::unique_ptr<RequestState> r = std::move(it->req);
      parked_.erase(it);
      cfg_.kv_handoff->forget(r->in.bootstrap->room);
      groups_[size_t(r->dp_group)].sched->drop_reserved(*r);
      end(std::move(r), FinishReason::Abort);
      return true;
    }
  return false;
}

void EngineImpl::pd_poll() {
  if (!is_mode(cfg_, DisaggMode::Decode)) return;
  std::vector<std::pair<std::unique_ptr<RequestState>, std::string>> failed;
  for (KvArrival& a : cfg_.kv_handoff->take_arrivals()) {
    auto it = std::find_if(parked_.begin(), parked_.end(), [&](const Parked& p) { return p.req->in.bootstrap->room == a.room; });
    if (it == parked_.end()) continue;  // aborted or timed out meanwhile
    if (a.error.empty()) {
      it->kv = std::move(a.packed);
      continue;
    }
    failed.emplace_back(std::move(it->req), "prefill server: " + a.error);
    parked_.erase(it);
  }
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < parked_.size();) {
    Parked& p = parked_[i];
    RequestState& r = *p.req;
    Scheduler& sched = *groups_[size_t(r.dp_group)].sched;
    const bool paged = sched.reserve_prompt(r);
    if (paged && p.kv) {
      std::unique_ptr<RequestState> owned = std::move(p.req);
      HostBytes kv = std::move(*p.kv);
      const auto parked_at = p.parked_at;
      parked_.erase(parked_.begin() + ptrdiff_t(i));
      PackedKvHead head;
      const auto t0 = std::chrono::steady_clock::now();
      try {
        head = unpack_prompt_kv(groups_[size_t(owned->dp_group)].runners, owned->pages, kv.span());
        DS_CHECK(head.tokens == owned->prompt_len, "KV transfer: {} prompt tokens arrived, the request has {}",
                 head.tokens, owned->prompt_len);
      } catch (const std::exception& e) {
        failed.emplace_back(std::move(owned), e.what());
        continue;
      }
      const auto t1 = std::chrono::steady_clock::now();
      ++pd_stats_.kv_received_total;
      pd_stats_.kv_received_bytes_total += int64_t(kv.size());
      pd_stats_.kv_unpack_seconds_total += std::chrono::duration<double>(t1 - t0).count();
      pd_stats_.kv_wait_seconds_total += std::chrono::duration<double>(t1 - parked_at).count();
      owned->computed = owned->prompt_len;
      owned->admitted_once = true;
      RequestState& joined = *owned;
      sched.join_running(std::move(owned));
      if (head.first_token >= 0) {
        SampleResult first;
        first.token = head.first_token;
        first.logprob = head.first_logprob;
        first.top_logprobs = std::move(head.first_top);
        accept_token(joined, std::move(first));
        // As one server would: tokens a grammar forces after the first one follow it at once (jump-forward);
        // the prefill side's drafts, made after the first token alone, then do not apply.
        if (!jump_forward(joined)) take_drafts(joined, head.drafts);
      } else {  // max_new_tokens 0: the prompt only
        joined.final_output.emplace();
        joined.final_output->finished = true;
        joined.final_output->finish_reason = FinishReason::Length;
      }
      if (joined.final_output) end(sched.finish(joined), joined.final_output->finish_reason);
      continue;
    }
    if (now >= p.deadline) {
      const std::string why =
          !paged ? fmt::format("the decode server had no free KV pages for the prompt within {} s (KV cache full)",
                               cfg_.kv_handoff->timeout_s())
                 : fmt::format("the prompt's KV did not arrive from the prefill server at {}:{} within {} s",
                               r.in.bootstrap->host, r.in.bootstrap->port, cfg_.kv_handoff->timeout_s());
      failed.emplace_back(std::move(p.req), why);
      parked_.erase(parked_.begin() + ptrdiff_t(i));
      continue;
    }
    ++i;
  }
  for (auto& [r, why] : failed) {
    ++pd_stats_.kv_failed_total;
    spdlog::warn("request {} (room {}): {}", r->in.id, r->in.bootstrap->room, why);
    cfg_.kv_handoff->forget(r->in.bootstrap->room);
    groups_[size_t(r->dp_group)].sched->drop_reserved(*r);
    end(std::move(r), FinishReason::Error, why);
  }
}

bool EngineImpl::pd_hands_off(const RequestState& r) const {
  return is_mode(cfg_, DisaggMode::Prefill) && r.in.bootstrap && !r.kv_handed_off && r.final_output &&
         r.final_output->finish_reason != FinishReason::Error && r.final_output->finish_reason != FinishReason::Abort;
}

void EngineImpl::take_drafts(RequestState& r, const std::vector<int32_t>& drafts) {
  if (!r.speculate || r.final_output || drafts.empty()) return;
  // (They come from another process: a token outside the vocabulary drops them; drafts never decide output.)
  if (std::any_of(drafts.begin(), drafts.end(), [&](int32_t d) { return d < 0 || d >= vocab_; })) return;
  if (groups_[size_t(r.dp_group)].spec.paused(steps_)) return;
  const auto budget = size_t(drafts_allowed(r, true));  // as a draft step of this server would
  if (budget == 0) return;
  r.draft.assign(drafts.begin(), drafts.begin() + std::min(budget, drafts.size()));
  // Drafts a grammar refuses could never be accepted (nor any after them): not verified at all.
  if (r.grammar) r.draft.resize(r.grammar->allowed_drafts(r.draft, r.tokens, size_t(r.prompt_len)));
}

void EngineImpl::pd_handoff(RequestState& r) {
  if (!is_mode(cfg_, DisaggMode::Prefill) || r.kv_handed_off || !r.final_output || !r.in.bootstrap) return;
  const RequestOutput& o = *r.final_output;
  if (o.finish_reason == FinishReason::Error) return;  // pd_on_end tells the decode side
  r.kv_handed_off = true;
  PackedKvHead head;
  head.tokens = r.prompt_len;
  if (r.output_len() > 0) head.first_token = r.tokens[size_t(r.prompt_len)];
  if (!o.logprobs.empty()) {
    head.first_logprob = o.logprobs[0].logprob;
    head.first_top = o.logprobs[0].top;
  }
  head.drafts = r.draft;
  try {
    const auto t0 = std::chrono::steady_clock::now();
    HostBytes packed = pack_prompt_kv(*groups_[size_t(r.dp_group)].runners[0], r.pages, head, *pd_buffers_);
    pd_stats_.kv_pack_seconds_total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++pd_stats_.kv_sent_total;
    pd_stats_.kv_sent_bytes_total += int64_t(packed.size());
    cfg_.kv_handoff->send(*r.in.bootstrap, std::move(packed));
  } catch (const std::exception& e) {
    spdlog::warn("request {} (room {}): its KV is not sent: {}", r.in.id, r.in.bootstrap->room, e.what());
    cfg_.kv_handoff->send(*r.in.bootstrap, {}, e.what());
  }
}

void EngineImpl::pd_on_end(RequestState& r, const RequestOutput& o) {
  if (!is_mode(cfg_, DisaggMode::Prefill) || r.kv_handed_off || !r.in.bootstrap) return;
  r.kv_handed_off = true;
  cfg_.kv_handoff->send(*r.in.bootstrap, {},
                        fmt::format("the request ended with finish reason {} before its KV was sent{}{}",
                                    finish_reason_name(o.finish_reason), o.error.empty() ? "" : ": ", o.error));
}

void EngineImpl::pd_take_parked(std::vector<std::unique_ptr<RequestState>>& into) {
  for (Parked& p : parked_) {
    cfg_.kv_handoff->forget(p.req->in.bootstrap->room);
    groups_[size_t(p.req->dp_group)].sched->drop_reserved(*p.req);
    into.push_back(std::move(p.req));
  }
  parked_.clear();
}

}  // namespace engine_internal
}  // namespace ds::runtime
