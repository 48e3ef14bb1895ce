// The "v31" ChatEncoder, now any Jinja chat template: the template is interpreted by chat/jinja
// with the variables transformers' apply_chat_template passes and the request preprocessing SGLang
// applies before it (null-valued keys dropped, content flattened to a string, tools omitted when
// tool_choice is "none", continue_final_message's assistant text appended after rendering).
// A template using something the interpreter lacks is refused when it loads, naming the construct.
#include <fmt/format.h>

#include "chat/encoder.h"
#include "chat/errors.h"
#include "chat/jinja/render.h"

namespace ds::chat {
namespace {

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";

jinja::Value message_value(const Message& m) {
  jinja::Dict d;
  if (m.raw.is_object()) {
    for (auto it = m.raw.begin(); it != m.raw.end(); ++it)
      if (!it.value().is_null()) d.set(it.key(), jinja::Value::from_json(it.value()));
  } else {
    d.set("role", jinja::Value::string(role_name(m.role)));
  }
  d.set("content", jinja::Value::string(m.content));
  return jinja::Value::of_dict(std::move(d));
}

class TemplateEncoder final : public ChatEncoder {
 public:
  TemplateEncoder(jinja::CompiledTemplate t, std::string origin) : t_(std::move(t)), origin_(std::move(origin)) {}
  std::string name() const override { return "jinja"; }

  EncodedPrompt encode(const ChatRequest& request) const override {
    std::vector<Message> msgs = request.messages;
    std::string assistant_prefix;  // continue_final_message: SGLang appends it after rendering
    if (request.continue_final_message && !msgs.empty() && msgs.back().role == Role::Assistant) {
      assistant_prefix = msgs.back().content;
      msgs.pop_back();
    }
    jinja::Dict vars;
    for (auto it = request.template_kwargs.begin(); it != request.template_kwargs.end(); ++it)
      vars.set(it.key(), jinja::Value::from_json(it.value()));
    jinja::List list;
    for (const auto& m : msgs) list.push_back(message_value(m));
    vars.set("messages", jinja::Value::of_list(std::move(list)));
    const bool tools = request.tools.is_array() && !request.tools.empty() && !request.tool_choice_none;
    vars.set("tools", tools ? jinja::Value::from_json(request.tools) : jinja::Value::none());
    vars.set("add_generation_prompt", jinja::Value::boolean(request.add_generation_prompt));
    vars.set("bos_token", jinja::Value::string(kBos));
    vars.set("eos_token", jinja::Value::string(kEos));
    vars.set("pad_token", jinja::Value::string(kEos));
    vars.set("unk_token", jinja::Value::none());
    EncodedPrompt out;
    try {
      out.text = t_.render(vars) + assistant_prefix;
    } catch (const jinja::RenderError& e) {
      bad_request("messages: the chat template ({}) refused the request: {}", origin_, e.what());
    }
    out.starts_in_reasoning = prompt_opens_reasoning(out.text);
    return out;
  }

 private:
  jinja::CompiledTemplate t_;
  std::string origin_;
};

}  // namespace

std::unique_ptr<ChatEncoder> make_template_encoder(const std::string& template_source, const std::string& origin) {
  try {
    return std::make_unique<TemplateEncoder>(jinja::CompiledTemplate::parse(template_source), origin);
  } catch (const jinja::UnsupportedError& e) {
    ds::fail("chat template from {} cannot be used: {}. Use --encoder dsv32 for DeepSeek-V3.2's own format.", origin,
             e.what());
  }
}

}  // namespace ds::chat
