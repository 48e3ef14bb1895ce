// The part of a chat request that every chat-shaped endpoint shares (/v1/chat/completions and
// /v1/responses): body -> checked sampling params, tool_choice, the encoded prompt, token ids,
// max_new_tokens, output-parser options and the engine requests. Endpoints differ only in how
// they write the output.
#pragma once
#include <vector>

#include "chat/output_parser.h"
#include "runtime/engine.h"
#include "server/generation_params.h"
#include "server/json.h"
#include "server/server_state.h"

namespace ds::server {

struct PreparedChat {
  GenerationParams params;
  chat::OutputParserOptions parser;
  std::vector<int32_t> prompt_ids;
  int32_t max_new_tokens = 0;
  std::vector<runtime::GenerateRequest> requests;  // n of them, ids `id` or `id-k`
};

// `body` is an OpenAI chat-completions body (tool_choice may be rewritten in place); throws
// ApiError (400 naming the field) for bad input.
PreparedChat prepare_chat(ServerState& st, Json& body, const std::string& id);

}  // namespace ds::server
