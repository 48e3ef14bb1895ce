// OpenAI's Responses API (POST /v1/responses), stateless: a request is translated into the
// chat-completions body the rest of the server already understands. Nothing is stored, so
// previous_response_id, item_reference and background runs are refused with a 400 that says so.
//
//   input: a string (one user message) or a list of items:
//     {role, content}            (type "message" optional; content a string or input_text /
//                                 output_text parts; roles user, system, developer, assistant)
//     {type: "reasoning", ...}   content[].text (reasoning_text) or summary[].text -> the next
//                                assistant turn's reasoning_content
//     {type: "function_call", call_id, name, arguments}  -> the assistant turn's tool_calls
//     {type: "function_call_output", call_id, output}    -> a tool message
//   instructions -> a leading system message; tools [{type: "function", name, description,
//   parameters}] -> chat tools; tool_choice; reasoning.effort -> reasoning_effort (see
//   chat/thinking_switch.h); max_output_tokens -> max_tokens; text.format must be text.
#pragma once
#include "server/json.h"

namespace ds::server {

// The chat-completions body for a Responses body. Throws ApiError (400 naming the field).
Json responses_to_chat(const Json& body);

// Chat-completions tools back in the Responses shape (for echoing `tools` in the response).
Json responses_tools_echo(const Json& body);

}  // namespace ds::server
