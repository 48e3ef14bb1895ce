#include "server/responses_request.h"

#include <fmt/format.h>

#include "server/api_error.h"

namespace ds::server {
namespace {

const Json* present(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::string str_field(const Json& obj, const char* key, const std::string& where) {
  const Json* v = present(obj, key);
  if (!v || !v->is_string()) bad_param(where + "." + key, fmt::format("{}.{} must be a string", where, key));
  return v->get<std::string>();
}

// A message's content: a string, or text parts (input_text, output_text, text) joined with "".
std::string message_text(const Json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) bad_param(where, where + " must be a string or an array of content parts");
  std::string text;
  for (size_t p = 0; p < content.size(); ++p) {
    const Json& part = content[p];
    const std::string pw = fmt::format("{}[{}]", where, p);
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad_param(pw, pw + " must be an object with a string type");
    const auto& type = part["type"].get_ref<const std::string&>();
    if (type != "input_text" && type != "output_text" && type != "text")
      bad_param(pw + ".type", fmt::format("{}.type '{}' is not supported (text only: input_text, output_text)", pw, type));
    text += str_field(part, "text", pw);
  }
  return text;
}

// Text of a reasoning item: its content (reasoning_text parts), else its summary parts.
std::string reasoning_text(const Json& item, const std::string& where) {
  std::string text;
  for (const char* key : {"content", "summary"}) {
    const Json* parts = present(item, key);
    if (!parts) continue;
    if (!parts->is_array()) bad_param(where + "." + key, fmt::format("{}.{} must be an array", where, key));
    for (size_t p = 0; p < parts->size(); ++p) {
      const std::string pw = fmt::format("{}.{}[{}]", where, key, p);
      if (!(*parts)[p].is_object()) bad_param(pw, pw + " must be an object");
      text += str_field((*parts)[p], "text", pw);
    }
    if (!text.empty()) return text;
  }
  return text;
}

struct Builder {
  Json messages = Json::array();
  std::optional<std::string> pending_reasoning;  // for the next assistant turn

  // The assistant message that function calls join: the last message when it is an assistant
  // turn that nothing (user or tool message) followed yet; a new one otherwise.
  Json& assistant_turn() {
    if (!messages.empty() && messages.back()["role"] == "assistant" && !pending_reasoning) return messages.back();
    Json m = {{"role", "assistant"}, {"content", ""}};
    take_reasoning(m);
    messages.push_back(std::move(m));
    return messages.back();
  }
  void take_reasoning(Json& m) {
    if (pending_reasoning) m["reasoning_content"] = *pending_reasoning;
    pending_reasoning.reset();
  }
};

void add_item(Builder& b, const Json& item, const std::string& where) {
  if (!item.is_object()) bad_param(where, where + " must be an object");
  std::string type = "message";
  if (const Json* t = present(item, "type")) {
    if (!t->is_string()) bad_param(where + ".type", where + ".type must be a string");
    type = t->get<std::string>();
  }
  if (type == "message") {
    const std::string role = str_field(item, "role", where);
    if (role != "user" && role != "system" && role != "developer" && role != "assistant")
      bad_param(where + ".role",
                fmt::format("{}.role '{}' is not one of user, system, developer, assistant", where, role));
    Json m = {{"role", role}, {"content", message_text(item.value("content", Json()), where + ".content")}};
    if (role == "assistant") {
      b.take_reasoning(m);
    } else if (b.pending_reasoning) {
      bad_param(where, where + ": a reasoning item must be followed by an assistant message or function call");
    }
    b.messages.push_back(std::move(m));
  } else if (type == "reasoning") {
    std::string text = reasoning_text(item, where);
    b.pending_reasoning = b.pending_reasoning ? *b.pending_reasoning + text : text;
  } else if (type == "function_call") {
    Json call = {{"id", str_field(item, "call_id", where)},
                 {"type", "function"},
                 {"function", {{"name", str_field(item, "name", where)}, {"arguments", str_field(item, "arguments", where)}}}};
    Json& turn = b.assistant_turn();
    if (!turn.contains("tool_calls")) turn["tool_calls"] = Json::array();
    turn["tool_calls"].push_back(std::move(call));
  } else if (type == "function_call_output") {
    const Json* out = present(item, "output");
    if (!out) bad_param(where + ".output", where + ".output must be a string or text parts");
    b.messages.push_back({{"role", "tool"},
                          {"tool_call_id", str_field(item, "call_id", where)},
                          {"content", message_text(*out, where + ".output")}});
  } else if (type == "item_reference") {
    bad_param(where, where + ": item_reference needs stored responses; this server is stateless (send the items)");
  } else {
    bad_param(where + ".type",
              fmt::format("{}.type '{}' is not supported (message, reasoning, function_call, function_call_output)",
                          where, type));
  }
}

Json chat_tools(const Json& tools) {
  if (!tools.is_array()) bad_param("tools", "tools must be an array");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string w = fmt::format("tools[{}]", i);
    if (!t.is_object() || !t.contains("type") || !t["type"].is_string()) bad_param(w, w + " must have a string type");
    if (t["type"] != "function")
      bad_param(w + ".type", fmt::format("{}.type '{}' is not supported (function tools only)", w,
                                         t["type"].get<std::string>()));
    Json fn = {{"name", str_field(t, "name", w)}};
    if (const Json* d = present(t, "description")) fn["description"] = *d;
    if (const Json* p = present(t, "parameters")) fn["parameters"] = *p;
    if (const Json* s = present(t, "strict")) fn["strict"] = *s;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

Json chat_tool_choice(const Json& c) {
  if (c.is_string()) return c;  // none / auto / required: checked by the chat path
  if (c.is_object() && c.value("type", "") == "function" && c.contains("name") && c["name"].is_string())
    return {{"type", "function"}, {"function", {{"name", c["name"]}}}};
  bad_param("tool_choice", "tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}");
}

}  // namespace

Json responses_to_chat(const Json& body) {
  if (!body.is_object()) bad_param("body", "request body must be a JSON object");
  if (present(body, "previous_response_id"))
    bad_param("previous_response_id",
              "previous_response_id is not supported: this server is stateless and stores no responses; send the "
              "whole conversation in input");
  if (present(body, "conversation"))
    bad_param("conversation", "conversation is not supported: this server is stateless; send the items in input");
  if (const Json* bg = present(body, "background"); bg && bg->is_boolean() && bg->get<bool>())
    bad_param("background", "background responses are not supported (stateless server)");
  if (const Json* text = present(body, "text")) {
    const Json* fmt_ = text->is_object() ? present(*text, "format") : nullptr;
    if (fmt_ && (!fmt_->is_object() || fmt_->value("type", "") != "text"))
      bad_param("text.format", "text.format other than {\"type\": \"text\"} is not supported by this server");
  }

  Builder b;
  if (const Json* ins = present(body, "instructions")) {
    if (!ins->is_string()) bad_param("instructions", "instructions must be a string");
    b.messages.push_back({{"role", "system"}, {"content", *ins}});
  }
  const Json* input = present(body, "input");
  if (!input) bad_param("input", "input is required: a string or a list of input items");
  if (input->is_string()) {
    b.messages.push_back({{"role", "user"}, {"content", *input}});
  } else if (input->is_array()) {
    if (input->empty()) bad_param("input", "input must not be empty");
    for (size_t i = 0; i < input->size(); ++i) add_item(b, (*input)[i], fmt::format("input[{}]", i));
    if (b.pending_reasoning) bad_param("input", "input ends with a reasoning item that no assistant output follows");
  } else {
    bad_param("input", "input must be a string or a list of input items");
  }

  Json chat = {{"messages", std::move(b.messages)}};
  // Fields with the same meaning in both APIs pass through (the chat path checks them).
  for (const char* key : {"model", "stream", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
                          "frequency_penalty", "presence_penalty", "repetition_penalty", "thinking",
                          "enable_thinking", "reasoning_effort", "chat_template_kwargs"})
    if (const Json* v = present(body, key)) chat[key] = *v;
  if (const Json* m = present(body, "max_output_tokens")) chat["max_tokens"] = *m;
  if (const Json* t = present(body, "tools")) chat["tools"] = chat_tools(*t);
  if (const Json* c = present(body, "tool_choice")) chat["tool_choice"] = chat_tool_choice(*c);
  if (const Json* r = present(body, "reasoning")) {
    if (!r->is_object()) bad_param("reasoning", "reasoning must be an object");
    if (const Json* e = present(*r, "effort"); e && !chat.contains("reasoning_effort")) chat["reasoning_effort"] = *e;
  }
  for (const char* key : {"n", "logprobs", "top_logprobs", "response_format"})
    if (present(body, key)) bad_param(key, fmt::format("{} is not supported on /v1/responses", key));
  return chat;
}

Json responses_tools_echo(const Json& body) {
  const Json* t = present(body, "tools");
  return t && t->is_array() ? *t : Json::array();
}

}  // namespace ds::server
