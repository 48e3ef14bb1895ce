// Jump-forward decoding (SGLang's name): where the grammar allows a single continuation — the key
// after `{"` of a schema with fixed keys, a const, the closing of a fixed structure — its bytes are
// appended to the output as tokens at once, without a forward pass per token. The engine's next
// forward pass then computes them as one extend chunk and samples after them.
//
// Which tokens: the tokenizer's own split of the forced bytes (what the model saw in training), read
// together with the previous token so that it is canonical across that boundary too. SGLang instead
// re-tokenizes the whole output and rewrites earlier tokens where the split changed; here emitted
// tokens are never rewritten (they were streamed, their KV is computed), so when the tokenizer would
// merge the previous token with the forced bytes, the forced bytes are split on their own. Where the
// tokenizer's tokens do not spell the bytes in the grammar's vocabulary (special tokens; a grammar
// over another vocabulary, as in tests), the longest-match split over the grammar's token trie.
// The last forced token is handed back to the model when the output goes on after it and a longer
// token that starts with it is allowed there (` "` before a free string, where ` "J` may follow):
// the canonical split of the final text may merge it with what the model writes next. When nothing
// but the end can follow, the stop token is appended too (may_stop).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "grammar/matcher.h"

namespace ds::grammar {

// Text -> token ids (the tokenizer's encode, no BOS). May be empty: the longest-match split is used.
using EncodeFn = std::function<std::vector<int32_t>(std::string_view)>;

struct JumpForwardOptions {
  size_t max_tokens = 0;   // at most this many tokens (the request's remaining output)
  bool may_stop = true;    // append the stop token where the grammar must end
  size_t max_bytes = 256;  // forced bytes looked at per jump
};

// The tokens to append after `prev_token` (the last token `m` accepted, or the prompt's last), in
// order; empty when the grammar does not force anything. `m` is left as it was.
std::vector<int32_t> jump_forward_tokens(GrammarMatcher& m, const EncodeFn& encode, int32_t prev_token,
                                         const JumpForwardOptions& options);

// Greedy longest-match split of `bytes` over the vocabulary's tokens; empty if a byte has no token.
std::vector<int32_t> longest_match_tokens(const TokenTable& vocab, std::string_view bytes);

// The length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t utf8_whole_prefix(std::string_view s);

}  // namespace ds::grammar
