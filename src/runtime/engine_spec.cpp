// What speculative decoding adds to an engine step (runtime/spec_decode.h): one sampling slot per logits
// row, the acceptance of verified drafts, and the draft step that follows the target step.
#include "runtime/engine_impl.h"
#include "util/log.h"

namespace ds::runtime::engine_internal {

void EngineImpl::finish_spec_plan(const std::vector<Scheduler::Chunk>& plan, StepOutput& res, DraftPlan* draft) {
  std::vector<SampleResult>& drawn = res.tokens.drawn;
  std::vector<std::string>& failed = res.tokens.failed;
  Scheduler& sched = *groups_[size_t(plan[0].req->dp_group)].sched;
  // Slots are per logits row; a verify chunk's rows are its last known token's and each draft's.
  size_t row = 0;
  int32_t first_token = 0;  // the chunk's first row in the step's hidden states
  DpGroup& group = groups_[size_t(plan[0].req->dp_group)];
  const bool paused = group.spec.paused(steps_);  // this step's requests draft nothing (they still fill)
  int64_t verified = 0, verify_tokens = 0;  // this step's verifying requests, their tokens
  std::vector<GrammarAhead> ahead = walk_grammars(plan, res, true);
  for (size_t i = 0; i < plan.size(); ++i) {
    const Scheduler::Chunk& c = plan[i];
    RequestState& r = *c.req;
    GrammarAhead* a = ahead.empty() || !ahead[i].walked ? nullptr : &ahead[i];
    const size_t rows = c.logits ? size_t(1 + c.drafts) : 0;
    const size_t row0 = row;
    row += rows;
    const int32_t token0 = first_token;
    first_token += c.len;
    int32_t confirmed = c.len - c.drafts;  // tokens whose KV is now right
    std::string error;
    for (size_t k = row0; k < row0 + rows && error.empty(); ++k) error = failed[k];
    if (!error.empty()) {
      sched.chunk_done(r, confirmed, c.drafts == 0);
      r.final_output.emplace();
      r.final_output->finished = true;
      r.final_output->finish_reason = FinishReason::Error;
      r.final_output->error = error;
      continue;
    }
    if (c.logits && c.len - c.drafts == 1 && r.output_len() > 0) {
      // A decode step of a speculating request (with drafts to verify, or none this time).
      int32_t emitted = 0;
      for (int32_t j = 0; j <= c.drafts; ++j) {
        const int32_t token = drawn[row0 + size_t(j)].token;
        accept_token(r, std::move(drawn[row0 + size_t(j)]), a);
        ++emitted;
        // Where the grammar now forces tokens, plain decoding appends them after this one: so the run ends
        // here, with them (the rows after it sampled what jump-forward appends).
        const bool jumped = jump_forward(r, a);
        if (jumped || r.final_output || j == c.drafts || token != r.draft[size_t(j)]) break;
      }
      if (a) rewind_ahead(r, *a);
      confirmed = emitted;
      sched.chunk_done(r, confirmed, false);
      if (r.speculate) {
        ++r.spec_verify_ct, ++spec_verify_total_;
        r.spec_tokens += emitted, spec_tokens_total_ += emitted;
        r.spec_drafts += c.drafts, spec_drafts_total_ += c.drafts;
        // Draft j was accepted when more than j + 1 tokens came out (the last emitted one is the step's own).
        const size_t d = size_t(c.drafts);
        if (spec_drafted_at_.size() < d) spec_drafted_at_.resize(d, 0), spec_accepted_at_.resize(d, 0);
        for (size_t j = 0; j < d; ++j) {
          ++spec_drafted_at_[j];
          if (int32_t(j) + 1 < emitted) ++spec_accepted_at_[j];
        }
      }
      r.draft.clear();
      if (c.drafts > 0) ++verified, verify_tokens += emitted;
    } else {
      sched.chunk_done(r, c.len);
      if (c.logits) {
        accept_token(r, std::move(drawn[row0]), a);
        jump_forward(r, a);
        if (a) rewind_ahead(r, *a);
      } else if (r.remaining() == 0) {  // max_new_tokens == 0: the prompt is cached, nothing to sample
        r.final_output.emplace();
        r.final_output->finished = true;
        r.final_output->finish_reason = FinishReason::Length;
      }
    }
    // Forced tokens (jump-forward) wait beyond the confirmed ones: the MTP layer below reads the first as the
    // token after the last confirmed position; the request drafts again once they are computed.
    // The MTP layer takes every confirmed position's KV, also while speculation pauses and for requests that
    // do not speculate (Model::mtp_fill, no drafts): its attention reads all earlier positions when drafting
    // (re)starts, of this request or of one that shares its cached pages, and a gap would leave those rows
    // to whatever the pool held before.
    if (!draft) continue;
    // A request that ends here drafts no more, but its last positions' KV goes in: its pages stay cached,
    // and the next turn of a conversation hits them. A prefill server's request ends after its first
    // token, but the decode server it goes to speculates on: the MTP layer's KV of the whole prompt
    // travels with the target's, and so do the drafts that this server would verify next (the decode
    // server's first step verifies them, as this one would have).
    const bool drafts_on = !r.final_output || pd_hands_off(r);
    // The MTP layer over the positions just confirmed: position p reads the target's hidden state at p
    // and the token at p + 1 (known for every confirmed position but a prompt chunk's last, when the
    // prompt goes on... which it then is: the next prompt token).
    const int32_t n = std::min<int32_t>(confirmed, int32_t(r.tokens.size()) - 1 - c.begin);
    if (n <= 0) continue;
    const int32_t budget =
        !r.speculate || !drafts_on || r.prefilling() || paused ? 0 : drafts_allowed(r, !r.final_output);
    const bool drafts_now = budget > 0;
    model::SequenceChunk sc;
    sc.tokens.assign(r.tokens.begin() + c.begin + 1, r.tokens.begin() + c.begin + 1 + n);
    sc.start_pos = c.begin;
    sc.page_table = r.pages;
    sc.logits = drafts_now ? model::LogitsMode::Last : model::LogitsMode::None;
    draft->in.batch.seqs.push_back(std::move(sc));
    for (int32_t k = 0; k < n; ++k) draft->in.hidden_rows.push_back(token0 + k);
    draft->reqs.push_back(&r);
    draft->budget.push_back(drafts_now ? budget : 0);
    draft->drafting += drafts_now ? 1 : 0;
  }
  if (group.spec.record(steps_, verify_tokens, verified, cfg_.speculative_min_accept_length)) {
    if (draft) draft->fill_only();  // paused from the next step on: no drafts; this step's KV still goes in
    spdlog::info("speculative decoding paused for {} steps{}: the last {} verify steps emitted < {} tokens per "
                 "request",
                 group.spec.last_pause(), groups_.size() > 1 ? fmt::format(" in DP group {}", plan[0].req->dp_group) : "",
                 kSpecWindow, cfg_.speculative_min_accept_length);
  }
}

int32_t EngineImpl::drafts_allowed(RequestState& r, bool by_output) {
  const int32_t budget = draft_budget(r, spec_steps_, cfg_.context_length, by_output);
  // Pages for the chain's positions and the next verify step's, without retracting anyone.
  return budget > 0 && groups_[size_t(r.dp_group)].sched->reserve(r, r.computed + spec_steps_ + 1) ? budget : 0;
}

void EngineImpl::add_slots(RequestState& r, const Scheduler::Chunk& c, std::vector<SampleSlot>& sample) {
  if (!c.logits) return;
  SampleSlot slot;
  slot.params = &r.in.sampling;
  slot.history = &r.tokens;  // only penalties read it, and requests with penalties do not speculate
  slot.prompt_len = size_t(r.prompt_len);
  slot.rng = &r.rng;
  slot.seed = r.seed;
  slot.penalties = &r.penalties;
  constrain(r, slot);
  // A grammar's row j samples under the mask after the first j drafts (computed with the step's masks).
  if (r.grammar) r.grammar->plan_rows(std::span<const int32_t>(r.draft.data(), size_t(c.drafts)), r.tokens,
                                      size_t(r.prompt_len));
  for (int32_t j = 0; j <= c.drafts; ++j) {
    // Row j draws the output token after j accepted drafts: its output index, and on the host a
    // generator of its own (the rows are drawn in parallel), seeded from the request's.
    slot.output_index = uint64_t(r.output_len() + j);
    if (r.grammar && j > 0) slot.allowed_bits = r.grammar->row_bits(size_t(j));
    if (c.drafts > 0) slot.rng = &row_rngs_.emplace_back(r.rng());
    sample.push_back(slot);
  }
}

void EngineImpl::run_drafts(std::vector<DraftPlan>& drafts) {
  bool any = false;
  // DP attention's exchanges in a draft step carry each drafting sequence's last token alone (the others
  // only fill the MTP layer's KV, outside the exchanges: ModelRunner::run_draft), one per drafting request.
  std::vector<int32_t> dp_drafting;
  for (auto& d : drafts) {
    any = any || d.any();
    dp_drafting.push_back(d.drafting);
  }
  if (!any) return;
  std::vector<LockStepGroup> steps(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    steps[g].runners = groups_[g].runners;
    if (!drafts[g].any() && !lock_step_) continue;  // sits out (DP attention: an idle group exchanges)
    drafts[g].in.mode = ForwardMode::DraftExtend;
    if (lock_step_) {
      drafts[g].in.batch.dp_tokens = dp_drafting;
      drafts[g].in.dp_drafting = dp_drafting;
    }
    steps[g].input = std::move(drafts[g].in);
  }
  std::vector<std::optional<StepOutput>> res = run_groups(steps);
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (!res[g]) continue;
    const DraftPlan& d = drafts[g];
    for (size_t k = 0; k < d.reqs.size(); ++k) {
      if (d.budget[k] == 0 || k >= res[g]->drafts.size()) continue;
      std::vector<int32_t>& got = res[g]->drafts[k];
      RequestState& r = *d.reqs[k];
      r.draft.assign(got.begin(), got.begin() + std::min<size_t>(got.size(), size_t(d.budget[k])));
      // Drafts a grammar refuses could never be accepted (nor any after them): not verified at all.
      if (r.grammar) r.draft.resize(r.grammar->allowed_drafts(r.draft, r.tokens, size_t(r.prompt_len)));
    }
  }
}

}  // namespace ds::runtime::engine_internal
