#include "chat/thinking_switch.h"

#include "chat/errors.h"

namespace ds::chat {
namespace {

std::optional<bool> deepseek_thinking_object(const Json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (!v.is_object() || !v.contains("type") || !v["type"].is_string())
    bad_request("thinking must be an object {{\"type\": \"enabled\"}} or {{\"type\": \"disabled\"}}");
  const auto& type = v["type"].get_ref<const std::string&>();
  if (type == "enabled") return true;
  if (type == "disabled") return false;
  bad_request("thinking.type must be 'enabled' or 'disabled', got '{}'", type);
}

std::optional<bool> reasoning_effort(const Json& v) {
  if (!v.is_string()) bad_request("reasoning_effort must be a string ('none', 'low', 'medium' or 'high')");
  const auto& e = v.get_ref<const std::string&>();
  if (e == "none") return false;
  if (e == "low" || e == "medium" || e == "high") return true;
  bad_request(
      "reasoning_effort '{}' is not supported: DeepSeek-V3.2 thinks or does not; use 'none' (no thinking) or "
      "'low', 'medium', 'high' (thinking, all alike)",
      e);
}

const Json* present(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

std::optional<bool> thinking_switch(const Json& body) {
  // Every spelling is checked, even one that loses: a malformed field is an error either way.
  std::optional<bool> kw_thinking, kw_enable, deepseek, enable, effort;
  if (const Json* k = present(body, "chat_template_kwargs")) {
    if (const Json* t = present(*k, "thinking")) kw_thinking = python_truthy(*t);
    if (const Json* t = present(*k, "enable_thinking")) kw_enable = python_truthy(*t);
  }
  if (const Json* t = present(body, "thinking")) deepseek = deepseek_thinking_object(*t);
  if (const Json* t = present(body, "enable_thinking")) {
    if (!t->is_boolean()) bad_request("enable_thinking must be a boolean");
    enable = t->get<bool>();
  }
  if (const Json* e = present(body, "reasoning_effort")) effort = reasoning_effort(*e);
  for (const auto& v : {kw_thinking, kw_enable, deepseek, enable, effort})
    if (v) return v;
  return std::nullopt;
}

void fold_thinking_switch(const Json& body, Json& template_kwargs) {
  const auto on = thinking_switch(body);
  if (present(template_kwargs, "thinking") || present(template_kwargs, "enable_thinking")) return;
  if (on) template_kwargs["thinking"] = *on;
}

}  // namespace ds::chat
