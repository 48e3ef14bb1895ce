// The grammar walk ahead of a step's outputs (grammar_ahead.h). After the draws, the step's grammar requests
// are advanced through their drawn tokens and jump-forward tokens on the mask pool, which is idle then (the
// step's masks are done): each request's tracker and tokens are its own, the compiled grammars are read-only
// apart from their locked node caches, and the tokenizer is safe to call from several threads (per-thread
// scratch and word caches). The serial output phase then only reads the verdicts.
#include "runtime/engine_impl.h"

namespace ds::runtime::engine_internal {

std::vector<GrammarAhead> EngineImpl::walk_grammars(const std::vector<Scheduler::Chunk>& plan, const StepOutput& res,
                                                    bool spec) {
  const int32_t min = cfg_.grammar_ahead_min_requests;
  if (min <= 0) return {};
  struct Item {
    size_t chunk, row0, rows;
    bool chain;
  };
  std::vector<Item> items;
  size_t row = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const Scheduler::Chunk& c = plan[i];
    // Rows as finish_plan / finish_spec_plan read them: one per chunk, or per logits row.
    const size_t row0 = spec ? row : i, rows = c.logits ? (spec ? size_t(1 + c.drafts) : 1) : 0;
    row += spec ? rows : 0;
    if (rows == 0 || !c.req->grammar) continue;
    bool failed = false;
    for (size_t k = row0; k < row0 + rows; ++k) failed = failed || !res.tokens.failed[k].empty();
    if (failed) continue;
    // A speculating request's decode step walks its verify chain; a finished prefill its one token.
    const bool chain = spec && c.len - c.drafts == 1 && c.req->output_len() > 0;
    items.push_back({i, row0, chain ? rows : 1, chain});
  }
  if (items.empty() || items.size() < size_t(min)) return {};
  std::vector<GrammarAhead> ahead(plan.size());
  const SampleResult* drawn = res.tokens.drawn.data();
  mask_pool_.parallel_for(items.size(), [&](size_t k) {
    const Item& it = items[k];
    walk_grammar(*plan[it.chunk].req, {drawn + it.row0, it.rows}, it.chain, ahead[it.chunk]);
  });
  return ahead;
}

void EngineImpl::walk_grammar(RequestState& r, std::span<const SampleResult> rows, bool chain,
                              GrammarAhead& a) noexcept {
  a.walked = true;
  try {
    GrammarTracker& g = *r.grammar;
    const size_t prompt_len = size_t(r.prompt_len);
    std::vector<int32_t> pending;  // the tokens walked, not yet appended to r.tokens
    auto step = [&](int32_t token) {
      pending.push_back(token);
      GrammarAhead::Step s;
      s.allowed = g.accept(token, r.tokens, pending, prompt_len);
      if (!s.allowed) pending.pop_back();
      s.terminated = g.terminated();
      s.after = g.checkpoint();
      a.steps.push_back(s);
      return s.allowed && !s.terminated;  // the request ends at a refused token and at the grammar's end
    };
    // As the serial loops go: a token, its jump-forward; a verify chain ends at a jump or a rejected draft.
    for (size_t j = 0; j < rows.size(); ++j) {
      const int32_t token = rows[j].token;
      if (!step(token)) return;
      std::vector<int32_t> forced = forced_tokens(r, token, pending.size());
      if (!forced.empty()) {
        a.forced_after = a.steps.size();
        a.forced = std::move(forced);
        for (int32_t id : a.forced)
          if (!step(id)) break;
        return;
      }
      if (!chain || j + 1 == rows.size() || token != r.draft[j]) return;
    }
  } catch (...) {
    a.error = std::current_exception();
    a.error_at = a.steps.size();
  }
}

GrammarAhead::Step& EngineImpl::take_step(GrammarAhead& a) {
  if (a.error && a.taken == a.error_at) std::rethrow_exception(a.error);
  DS_CHECK(a.taken < a.steps.size(), "grammar walk: the outputs took token {} of {} walked", a.taken + 1,
           a.steps.size());
  return a.steps[a.taken++];
}

void EngineImpl::rewind_ahead(RequestState& r, const GrammarAhead& a) {
  // Today's serial code would not have advanced past what it took (a stop string or max_tokens came first).
  if (a.taken > 0 && a.taken < a.steps.size()) r.grammar->rewind(a.steps[a.taken - 1].after);
}

}  // namespace ds::runtime::engine_internal
