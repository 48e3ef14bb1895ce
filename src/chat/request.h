// An OpenAI chat-completions request body, checked and normalized the way SGLang normalizes
// it before chat encoding (content parts flattened, null content -> "").
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "chat/json_text.h"

namespace ds::chat {

enum class Role { System, Developer, User, Assistant, Tool };
const char* role_name(Role role);

struct ToolCall {
  std::string id;
  std::string name;
  Json arguments;  // as sent: a JSON string (the OpenAI form) or an object
};

struct Message {
  Role role = Role::User;
  std::string content;                           // text parts joined by " "; null -> ""
  std::optional<std::string> reasoning_content;  // assistant only
  bool tool_calls_present = false;               // "tool_calls" given and not null
  std::vector<ToolCall> tool_calls;
  std::optional<std::string> tool_call_id;       // tool only
  Json prefix;                                   // DeepSeek prefix completion flag (null if absent)
  Json raw;                                      // the message object as sent (chat templates see it)
};

struct ChatRequest {
  std::vector<Message> messages;
  Json tools = Json::array();        // OpenAI tool objects, as sent
  bool tool_choice_none = false;     // tool_choice == "none"
  Json template_kwargs = Json::object();  // chat_template_kwargs
  bool add_generation_prompt = true;
  bool continue_final_message = false;
};

// Validates and normalizes a request body; throws RequestError naming the bad field.
ChatRequest parse_chat_request(const Json& body);

// Thinking mode: chat_template_kwargs.thinking, else chat_template_kwargs.enable_thinking, else off.
// parse_chat_request folds the other spellings (DeepSeek's `thinking` object, `enable_thinking`,
// `reasoning_effort`) into chat_template_kwargs first (chat/thinking_switch.h).
bool thinking_requested(const ChatRequest& request);

}  // namespace ds::chat
