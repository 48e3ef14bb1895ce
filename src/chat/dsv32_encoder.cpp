// The "dsv32" ChatEncoder: OpenAI request -> DeepSeek message dicts -> dsv32::encode_messages,
// with the request handling SGLang applies for DeepSeek-V3.2 (serving_chat.py).
#include "chat/dsv32_format.h"
#include "chat/encoder.h"

namespace ds::chat {
namespace {

Json to_deepseek_message(const Message& m) {
  Json out = Json::object();
  out["role"] = role_name(m.role);
  out["content"] = m.content;
  if (m.reasoning_content) out["reasoning_content"] = *m.reasoning_content;
  if (m.tool_calls_present) {
    Json calls = Json::array();
    for (const auto& c : m.tool_calls) {
      Json fn = {{"name", c.name}, {"arguments", c.arguments}};
      calls.push_back({{"id", c.id}, {"type", "function"}, {"function", fn}});
    }
    out["tool_calls"] = calls;
  }
  return out;
}

class Dsv32Encoder final : public ChatEncoder {
 public:
  std::string name() const override { return "dsv32"; }

  EncodedPrompt encode(const ChatRequest& request) const override {
    std::vector<Message> msgs = request.messages;
    std::string assistant_prefix;  // continue_final_message: the final assistant text continues
    if (request.continue_final_message && !msgs.empty() && msgs.back().role == Role::Assistant) {
      assistant_prefix = msgs.back().content;
      msgs.pop_back();
    }
    Json messages = Json::array();
    for (const auto& m : msgs) messages.push_back(to_deepseek_message(m));
    // SGLang: an empty leading system message carries the request's tools.
    if (messages.empty() || messages[0]["role"] != "system")
      messages.insert(messages.begin(), Json{{"role", "system"}, {"content", ""}});
    if (!request.tools.empty()) messages[0]["tools"] = request.tools;

    dsv32::EncodeOptions opts;
    opts.mode = thinking_requested(request) ? dsv32::ThinkingMode::Thinking : dsv32::ThinkingMode::Chat;
    EncodedPrompt out;
    out.text = dsv32::encode_messages(messages, opts) + assistant_prefix;
    out.starts_in_reasoning = prompt_opens_reasoning(out.text);
    return out;
  }
};

}  // namespace

std::unique_ptr<ChatEncoder> make_dsv32_encoder() { return std::make_unique<Dsv32Encoder>(); }

bool prompt_opens_reasoning(const std::string& prompt) {
  auto open = prompt.rfind(dsv32::kThinkStart);
  if (open == std::string::npos) return false;
  auto close = prompt.rfind(dsv32::kThinkEnd);
  return close == std::string::npos || close < open;
}

}  // namespace ds::chat
