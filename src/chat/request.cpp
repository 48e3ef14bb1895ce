#include "chat/request.h"

#include "chat/errors.h"
#include "chat/thinking_switch.h"

namespace ds::chat {
namespace {

Role parse_role(const Json& msg, size_t i) {
  auto it = msg.find("role");
  if (it == msg.end() || !it->is_string()) bad_request("messages[{}].role must be a string", i);
  const auto& r = it->get_ref<const std::string&>();
  if (r == "system") return Role::System;
  if (r == "developer") return Role::Developer;
  if (r == "user") return Role::User;
  if (r == "assistant") return Role::Assistant;
  if (r == "tool") return Role::Tool;
  bad_request("messages[{}].role: unknown role '{}' (expected system, developer, user, assistant or tool)",
              i, r);
}

// content: string, null, or an array of {"type": "text", "text": ...} parts.
std::string parse_content(const Json& msg, size_t i) {
  auto it = msg.find("content");
  if (it == msg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) bad_request("messages[{}].content must be a string, null or an array of parts", i);
  std::string joined;
  bool first = true;
  for (size_t p = 0; p < it->size(); ++p) {
    const Json& part = (*it)[p];
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad_request("messages[{}].content[{}] must be an object with a string 'type'", i, p);
    if (part["type"] != "text")
      bad_request("messages[{}].content[{}].type '{}' is not supported (text only)", i, p,
                  part["type"].get<std::string>());
    if (!part.contains("text") || !part["text"].is_string())
      bad_request("messages[{}].content[{}].text must be a string", i, p);
    if (!first) joined += ' ';
    first = false;
    joined += part["text"].get<std::string>();
  }
  return joined;
}

std::vector<ToolCall> parse_tool_calls(const Json& list, size_t i) {
  if (!list.is_array()) bad_request("messages[{}].tool_calls must be an array", i);
  std::vector<ToolCall> calls;
  for (size_t c = 0; c < list.size(); ++c) {
    const Json& tc = list[c];
    if (!tc.is_object()) bad_request("messages[{}].tool_calls[{}] must be an object", i, c);
    ToolCall call;
    if (tc.contains("id") && tc["id"].is_string()) call.id = tc["id"].get<std::string>();
    auto fn = tc.find("function");
    if (fn == tc.end() || !fn->is_object())
      bad_request("messages[{}].tool_calls[{}].function must be an object", i, c);
    if (!fn->contains("name") || !(*fn)["name"].is_string())
      bad_request("messages[{}].tool_calls[{}].function.name must be a string", i, c);
    call.name = (*fn)["name"].get<std::string>();
    auto args = fn->find("arguments");
    if (args == fn->end() || !(args->is_string() || args->is_object()))
      bad_request("messages[{}].tool_calls[{}].function.arguments must be a JSON string", i, c);
    call.arguments = *args;
    calls.push_back(std::move(call));
  }
  return calls;
}

void check_tools(const Json& tools) {
  if (!tools.is_array()) bad_request("tools must be an array");
  for (size_t t = 0; t < tools.size(); ++t) {
    const Json& tool = tools[t];
    if (!tool.is_object() || !tool.contains("function") || !tool["function"].is_object())
      bad_request("tools[{}].function must be an object", t);
    const Json& fn = tool["function"];
    if (!fn.contains("name") || !fn["name"].is_string())
      bad_request("tools[{}].function.name must be a string", t);
  }
}

// A tool message answers the k-th call of the assistant message before the run of tool
// messages; more results than calls, or no such assistant, is an error.
void check_tool_results(const std::vector<Message>& msgs) {
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (msgs[i].role != Role::Tool) continue;
    size_t j = i;
    while (j > 0 && msgs[j - 1].role == Role::Tool) --j;
    if (j == 0 || msgs[j - 1].role != Role::Assistant || msgs[j - 1].tool_calls.empty())
      bad_request("messages[{}]: a tool message must follow an assistant message with tool_calls", i);
    if (i - j + 1 > msgs[j - 1].tool_calls.size())
      bad_request("messages[{}]: more tool results than tool_calls in messages[{}]", i, j - 1);
  }
}

bool optional_bool(const Json& body, const char* key, bool fallback) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad_request("{} must be a boolean", key);
  return it->get<bool>();
}

}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::System: return "system";
    case Role::Developer: return "developer";
    case Role::User: return "user";
    case Role::Assistant: return "assistant";
    case Role::Tool: return "tool";
  }
  return "?";
}

ChatRequest parse_chat_request(const Json& body) {
  if (!body.is_object()) bad_request("request body must be a JSON object");
  auto msgs = body.find("messages");
  if (msgs == body.end() || !msgs->is_array()) bad_request("messages must be an array");
  if (msgs->empty()) bad_request("messages must not be empty");
  ChatRequest req;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const Json& m = (*msgs)[i];
    if (!m.is_object()) bad_request("messages[{}] must be an object", i);
    Message msg;
    msg.role = parse_role(m, i);
    msg.content = parse_content(m, i);
    if (auto rc = m.find("reasoning_content"); rc != m.end() && !rc->is_null()) {
      if (!rc->is_string()) bad_request("messages[{}].reasoning_content must be a string", i);
      msg.reasoning_content = rc->get<std::string>();
    }
    if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
      if (msg.role != Role::Assistant) bad_request("messages[{}]: only assistant messages have tool_calls", i);
      msg.tool_calls_present = true;
      msg.tool_calls = parse_tool_calls(*tc, i);
    }
    if (auto id = m.find("tool_call_id"); id != m.end() && !id->is_null()) {
      if (!id->is_string()) bad_request("messages[{}].tool_call_id must be a string", i);
      msg.tool_call_id = id->get<std::string>();
    }
    if (auto p = m.find("prefix"); p != m.end()) msg.prefix = *p;
    msg.raw = m;
    req.messages.push_back(std::move(msg));
  }
  check_tool_results(req.messages);
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) {
    check_tools(*t);
    req.tools = *t;
  }
  if (auto tc = body.find("tool_choice"); tc != body.end() && tc->is_string())
    req.tool_choice_none = (*tc == "none");
  if (auto k = body.find("chat_template_kwargs"); k != body.end() && !k->is_null()) {
    if (!k->is_object()) bad_request("chat_template_kwargs must be an object");
    req.template_kwargs = *k;
  }
  fold_thinking_switch(body, req.template_kwargs);  // DeepSeek's / OpenAI's spellings of the switch
  req.add_generation_prompt = optional_bool(body, "add_generation_prompt", true);
  req.continue_final_message = optional_bool(body, "continue_final_message", false);
  if (req.continue_final_message && req.messages.back().role != Role::Assistant)
    bad_request("continue_final_message needs the last message to be an assistant message");
  return req;
}

bool thinking_requested(const ChatRequest& request) {
  const Json& k = request.template_kwargs;
  if (auto it = k.find("thinking"); it != k.end()) return python_truthy(*it);
  if (auto it = k.find("enable_thinking"); it != k.end()) return python_truthy(*it);
  return false;
}

}  // namespace ds::chat
