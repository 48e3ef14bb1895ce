// The text cache-aware routing matches against, taken from a request body as sglang_router does:
// the messages' text for chat, the prompt for completions, `text` for /generate, `input` for
// /v1/responses. Never throws: a body we cannot read gives "" (the worker answers its 400).
#pragma once
#include <string>
#include <string_view>

namespace ds::router {

std::string routing_text(std::string_view path, std::string_view body);

}  // namespace ds::router
