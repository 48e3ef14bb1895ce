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

bool EngineImpl::jump_forward(RequestState& r) {
  // Forced continuations (deepseekv31 tool_choice) keep their own per-token masks.
  if (!cfg_.jump_forward || !r.grammar || r.forced || r.final_output) return false;
  const int64_t room = std::min<int64_t>(int64_t(r.in.max_new_tokens) - r.output_len(),
                                         int64_t(cfg_.context_length) - int64_t(r.tokens.size()));
  if (room <= 0) return false;
  grammar::JumpForwardOptions o;
  o.max_tokens = size_t(room);
  o.may_stop = true;  // a complete grammar's EOS ends the request, with ignore_eos too (accept_token)
  const std::vector<int32_t> ids =
      r.grammar->jump_forward([this](std::string_view text) { return tok_.encode(text); }, r.tokens.back(), o);
  for (int32_t id : ids) {
    SampleResult s;
    s.token = id;
    if (r.in.sampling.logprobs && r.in.sampling.top_logprobs > 0) s.top_logprobs = {{id, 0.0f}};
    ++r.jump_forward_tokens;
    ++jump_forward_total_;
    accept_token(r, std::move(s));
    if (r.final_output) break;
  }
  return !ids.empty();
}

}  // namespace ds::runtime::engine_internal
