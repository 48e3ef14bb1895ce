// The "v31" ChatEncoder: a native rendering of the DeepSeek V3.1 / V3.2-Exp Jinja chat
// templates. Instead of interpreting Jinja, each known template is recognised by a
// fingerprint of its exact text and rendered by the code below, which mirrors its logic
// including the whitespace that Jinja (trim_blocks + lstrip_blocks, as in transformers)
// leaves before each output. Unknown templates are refused, never approximated.
#include <cstdint>

#include "chat/encoder.h"
#include "chat/errors.h"

namespace ds::chat {
namespace {

// How one template renders. The ind_* strings are the indentation Jinja emits before the
// corresponding output (see the .jinja sources in tests/fixtures/chat/templates/).
struct Dialect {
  const char* id;
  std::uint64_t fingerprint;
  const char* preamble;        // text before the BOS token
  bool tools_block;            // renders the request's tools into the system prompt
  bool enable_thinking_alias;  // `enable_thinking` (if given) overrides `thinking`
  bool only_sys_rules;         // is_only_sys / is_prefix logic (V3.1-Terminus and later)
  bool args_tojson;            // non-string tool arguments go through tojson (else error)
  const char* ind_calls_open;
  const char* ind_first_call;
  const char* ind_next_call;
  const char* ind_calls_end;
  const char* ind_assistant_open;
  const char* ind_think_tag;
  const char* ind_after_tool;
  const char* ind_plain;
  const char* ind_gen_assistant;
  const char* ind_gen_think;
};

constexpr Dialect kDialects[] = {
    // sglang examples/chat_template/tool_chat_template_deepseekv31.jinja (loaded as a .jinja file)
    {"sglang-deepseekv31", 0x8d49bb0f06dbcaf0ULL, "\n\n", true, false, false, true, "      ",
     "          ", "        ", "    ", "      ", "        ", "      ", "      ", "  ", "    "},
    // sglang examples/chat_template/tool_chat_template_deepseekv32.jinja (V3.2-Exp)
    {"sglang-deepseekv32", 0x92e2aec8c86d23cdULL, "\n\n", true, true, true, true, "      ",
     "          ", "        ", "    ", "      ", "        ", "      ", "      ", "    ", "      "},
    // DeepSeek V3.1-Terminus / V3.2-Exp tokenizer_config.json chat_template (one line)
    {"deepseek-v32-exp", 0x21d0c351e642e333ULL, "", false, false, true, false, "", "", "", "", "",
     "", "", "", "", ""},
};

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";
constexpr const char* kToolsIntro = "## Tools\nYou have access to the following tools:\n";
constexpr const char* kToolsRules =
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
    "<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\nWhere:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n";

std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string tools_text(const Json& tools) {
  std::string text = kToolsIntro;
  for (size_t t = 0; t < tools.size(); ++t) {
    const Json& fn = tools[t]["function"];
    auto desc = fn.find("description");
    if (desc == fn.end() || !desc->is_string())
      bad_request("tools[{}].function.description must be a string (this chat template prints it)", t);
    if (!fn.contains("parameters"))
      bad_request("tools[{}].function.parameters is required by this chat template", t);
    text += "\n### " + fn["name"].get<std::string>() + "\nDescription: " + desc->get<std::string>() +
            "\n\nParameters: " + python_json_dumps(fn["parameters"]) + "\n";
  }
  return text + kToolsRules;
}

class TemplateEncoder final : public ChatEncoder {
 public:
  explicit TemplateEncoder(const Dialect& d) : d_(d) {}
  std::string name() const override { return std::string("v31/") + d_.id; }

  EncodedPrompt encode(const ChatRequest& request) const override {
    std::vector<Message> msgs = request.messages;
    std::string assistant_prefix;  // continue_final_message (SGLang appends it after rendering)
    if (request.continue_final_message && !msgs.empty() && msgs.back().role == Role::Assistant) {
      assistant_prefix = msgs.back().content;
      msgs.pop_back();
    }
    EncodedPrompt out;
    out.text = render(msgs, request) + assistant_prefix;
    out.starts_in_reasoning = prompt_opens_reasoning(out.text);
    return out;
  }

 private:
  bool thinking(const ChatRequest& r) const {
    const Json& k = r.template_kwargs;
    if (d_.enable_thinking_alias && k.contains("enable_thinking")) return python_truthy(k["enable_thinking"]);
    return k.contains("thinking") && python_truthy(k["thinking"]);
  }

  std::string arguments_text(const ToolCall& c, size_t i) const {
    if (c.arguments.is_string()) return c.arguments.get<std::string>();
    if (!d_.args_tojson)
      bad_request("messages[{}]: this chat template needs tool call arguments as a JSON string", i);
    return python_json_dumps(c.arguments);
  }

  std::string render(const std::vector<Message>& msgs, const ChatRequest& r) const {
    const bool think = thinking(r);
    std::string system_prompt;
    bool first_system = true, has_system = false;
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (msgs[i].role == Role::Developer)
        bad_request("messages[{}].role: 'developer' is not supported by this chat template", i);
      if (msgs[i].role != Role::System) continue;
      if (!first_system) system_prompt += "\n\n";
      system_prompt += msgs[i].content;
      first_system = false;
      has_system = true;
    }
    if (d_.tools_block && !r.tools.empty() && !r.tool_choice_none)
      system_prompt += "\n\n" + tools_text(r.tools);

    std::string out = std::string(d_.preamble) + kBos + system_prompt;
    bool is_tool = false, is_last_user = false, is_prefix = false;
    bool is_only_sys = d_.only_sys_rules && has_system;
    for (size_t i = 0; i < msgs.size(); ++i) {
      const Message& m = msgs[i];
      if (m.role == Role::User) {
        is_tool = false;
        is_last_user = true;
        out += "<｜User｜>" + m.content;
      } else if (m.role == Role::Assistant && m.tool_calls_present) {
        if (is_last_user || (d_.only_sys_rules && is_only_sys))
          out += std::string(d_.ind_calls_open) + "<｜Assistant｜></think>";
        is_last_user = false;
        is_tool = false;
        bool first = true;
        for (const auto& c : m.tool_calls) {
          const std::string call = "<｜tool▁call▁begin｜>" + c.name + "<｜tool▁sep｜>" + arguments_text(c, i) +
                                   "<｜tool▁call▁end｜>";
          if (first)
            out += d_.ind_first_call + m.content + "<｜tool▁calls▁begin｜>" + call;
          else
            out += d_.ind_next_call + call;
          first = false;
        }
        out += std::string(d_.ind_calls_end) + "<｜tool▁calls▁end｜>" + kEos;
      } else if (m.role == Role::Assistant) {
        const bool prefix = python_truthy(m.prefix);
        if (is_last_user) {
          out += std::string(d_.ind_assistant_open) + "<｜Assistant｜>";
          out += std::string(d_.ind_think_tag) + ((prefix && think) ? "<think>" : "</think>");
        }
        if (d_.only_sys_rules && prefix) is_prefix = true;
        is_last_user = false;
        if (is_tool) {
          out += d_.ind_after_tool + m.content + kEos;
          is_tool = false;
        } else {
          std::string content = m.content;
          if (auto p = content.find("</think>"); p != std::string::npos) content = content.substr(p + 8);
          out += d_.ind_plain + content + kEos;
        }
      } else if (m.role == Role::Tool) {
        is_last_user = false;
        is_tool = true;
        out += "<｜tool▁output▁begin｜>" + m.content + "<｜tool▁output▁end｜>";
      }
      if (d_.only_sys_rules && m.role != Role::System) is_only_sys = false;
    }
    const bool gen = d_.only_sys_rules ? (r.add_generation_prompt && !is_tool &&
                                          (is_last_user || is_only_sys || !is_prefix))
                                       : (r.add_generation_prompt && is_last_user && !is_tool);
    if (gen) {
      out += std::string(d_.ind_gen_assistant) + "<｜Assistant｜>";
      out += std::string(d_.ind_gen_think) + (think ? "<think>" : "</think>");
    }
    return out;
  }

  const Dialect& d_;
};

}  // namespace

std::unique_ptr<ChatEncoder> make_template_encoder(const std::string& template_source,
                                                   const std::string& origin) {
  const std::uint64_t fp = fnv1a64(template_source);
  for (const auto& d : kDialects)
    if (d.fingerprint == fp) return std::make_unique<TemplateEncoder>(d);
  ds::fail(
      "chat template from {} is not one dsserve can render (fingerprint {:016x}); supported: the "
      "DeepSeek V3.1-Terminus/V3.2-Exp tokenizer_config template and SGLang's "
      "tool_chat_template_deepseekv31.jinja / tool_chat_template_deepseekv32.jinja, byte for byte. "
      "Use --encoder dsv32 for DeepSeek-V3.2's own format.",
      origin, fp);
}

}  // namespace ds::chat
