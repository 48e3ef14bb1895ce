// The thinking switch as the APIs people use spell it. SGLang reads only
// chat_template_kwargs.thinking (or .enable_thinking); DeepSeek's own API takes
// `thinking: {"type": "enabled"|"disabled"}`; vLLM/Qwen-style clients send a top-level
// `enable_thinking`; the OpenAI SDK sends `reasoning_effort`. All of them are folded into
// chat_template_kwargs.thinking, so the encoders (and templates) see one variable.
#pragma once
#include <optional>

#include "chat/json_text.h"

namespace ds::chat {

// The first of these that is present decides (documented in README.md):
//   1. chat_template_kwargs.thinking            (SGLang; any Python-truthy value)
//   2. chat_template_kwargs.enable_thinking     (SGLang)
//   3. thinking: {"type": "enabled"|"disabled"} (DeepSeek's API; also a plain boolean)
//   4. enable_thinking: true|false              (top level)
//   5. reasoning_effort: "none" -> off; "low"|"medium"|"high" -> on (the V3.2 family has one
//      thinking depth, so the three levels think alike); other values are refused.
// Returns nullopt when none is present. Throws RequestError naming the field on a bad value.
std::optional<bool> thinking_switch(const Json& body);

// Sets template_kwargs["thinking"] from thinking_switch() when the kwargs do not say it
// themselves (rules 1-2 keep their own values untouched).
void fold_thinking_switch(const Json& body, Json& template_kwargs);

}  // namespace ds::chat
