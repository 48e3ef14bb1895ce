// Logprobs in the three response shapes: chat (`choices[].logprobs.content[]` with token, bytes,
// logprob, top_logprobs), completions (tokens / token_logprobs / top_logprobs / text_offset) and
// SGLang's native meta_info (output_token_logprobs as [logprob, token_id, text]).
#pragma once
#include <cstddef>
#include <vector>

#include "runtime/engine.h"
#include "server/json.h"
#include "tokenizer/tokenizer.h"

namespace ds::server {

// {"content": [...]} for these tokens.
Json chat_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok);
// `text_offset`: where the first token's text starts in the choice's text.
Json completion_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok, size_t text_offset);
// [[logprob, id, text or null], ...] and, per token, its top alternatives in the same form.
Json native_token_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok, bool with_text);
Json native_top_logprobs(const std::vector<runtime::TokenLogprob>& lps, const tok::Tokenizer& tok, bool with_text);

}  // namespace ds::server
