// Jump-forward decoding in the engine (grammar/jump_forward.h): after each sampled token of a request (and
// at its arrival), the tokens its grammar forces next are accepted the same way (text, stop strings, EOS,
// max_tokens: the run ends at the token that ends the request) and streamed at once. They join
// `tokens` beyond `computed`, so the scheduler runs them as an extend chunk in the next step (with the
// other requests' decodes) and samples after them; the radix cache, retraction and n > 1 see them as
// any other output tokens. Under speculative decoding an accepted run ends at a token after which the
// grammar forces some (the forced ones follow it, as in plain decoding), so the outputs are the same.
// Logprobs: each forced token reports logprob 0 (top list: itself), the
// probability of the forced text under the grammar-masked distribution — the target model never
// scores them (SGLang reports none for jumped tokens either).
#include "runtime/engine_impl.h"
#include "tokenizer/tokenizer.h"

namespace ds::runtime::engine_internal {

std::vector<int32_t> EngineImpl::forced_tokens(RequestState& r, int32_t prev, size_t pending) {
  // Forced continuations (deepseekv31 tool_choice) keep their own per-token masks.
  if (!cfg_.jump_forward || !r.grammar || r.forced) return {};
  const int64_t room = std::min<int64_t>(int64_t(r.in.max_new_tokens) - r.output_len() - int64_t(pending),
                                         int64_t(cfg_.context_length) - int64_t(r.tokens.size() + pending));
  if (room <= 0) return {};
  grammar::JumpForwardOptions o;
  o.max_tokens = size_t(room);
  o.may_stop = true;  // a complete grammar's EOS ends the request, with ignore_eos too (accept_token)
  return r.grammar->jump_forward([this](std::string_view text) { return tok_.encode(text); }, prev, o);
}

bool EngineImpl::jump_forward(RequestState& r, GrammarAhead* ahead) {
  if (r.final_output || !r.grammar) return false;
  if (ahead) {
    // The walk's jump after this token (none unless it stopped here); its error where it threw.
    if (ahead->error && ahead->taken == ahead->error_at) std::rethrow_exception(ahead->error);
    if (ahead->taken != ahead->forced_after) return false;
  }
  const std::vector<int32_t> ids = ahead ? ahead->forced : forced_tokens(r, r.tokens.back(), 0);
  for (int32_t id : ids) {
    SampleResult s;
    s.token = id;
    if (r.in.sampling.logprobs && r.in.sampling.top_logprobs > 0) s.top_logprobs = {{id, 0.0f}};
    ++r.jump_forward_tokens;
    ++jump_forward_total_;
    accept_token(r, std::move(s), ahead);
    if (r.final_output) break;
  }
  return !ids.empty();
}

}  // namespace ds::runtime::engine_internal
