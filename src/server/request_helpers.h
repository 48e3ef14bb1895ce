// Pieces every generation endpoint needs: the model-name check, the context-length check, fresh
// response ids, and the n engine requests of one prompt.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/generation_params.h"
#include "server/json.h"
#include "server/server_state.h"

namespace ds::server {

// 404 (code model_not_found) unless body.model is absent, the served name, the model path or "default".
void check_model(const ServerState& st, const Json& body);

// The max_new_tokens to run with: the explicit one when prompt + it fits the context (else 400
// naming `param`), or `default_max` (-1: all the context leaves) clamped to what is left.
int32_t resolve_max_new_tokens(const ServerState& st, size_t prompt_len, const GenerationParams& p, int64_t default_max,
                               const char* param);

// Checked before a prompt is tokenized or copied: `prompts` x n engine requests must fit the queue
// (--max-queued-requests), else no part of the request could ever be queued together: 400 naming `param`.
void check_generation_count(const ServerState& st, size_t prompts, int32_t n, const std::string& param);

// A JSON list of token ids given by the client: each in [0, vocab) of the model
// (ServerConfig::model_vocab_size; the tokenizer's where unset); 400 naming `param` showing the value as sent.
std::vector<int32_t> read_token_ids(const ServerState& st, const Json& list, const std::string& param);

// stream_options.include_usage of a body (false when absent; 400 when stream_options is no object).
bool stream_include_usage(const Json& body);

// "<prefix>" + 32 random hex digits.
std::string new_request_id(const char* prefix);

// n requests for one prompt; ids base (n == 1) or base-k, seeds seed + k so choices differ.
// `first_index` numbers the ids across prompts of a batch.
std::vector<runtime::GenerateRequest> make_requests(const std::string& base_id, const std::vector<int32_t>& prompt,
                                                    const GenerationParams& p, int32_t max_new_tokens, bool numbered,
                                                    size_t first_index);

}  // namespace ds::server

namespace ds::server {

// Prefill/decode disaggregation: SGLang's bootstrap_host, bootstrap_port and bootstrap_room fields (which
// `dsserve router --pd-disaggregation` adds) onto the request's generations. Each is a scalar or a list of
// one per generation; a scalar room r gives generation k the room r + k (prompts x n of a batch). Nothing
// when the body has no bootstrap_room; 400 when the fields are malformed.
void attach_bootstrap(const Json& body, std::vector<runtime::GenerateRequest>& requests);

}  // namespace ds::server
