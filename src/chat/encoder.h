// Chat encoding: an OpenAI chat request -> the exact prompt text the model was trained on.
// Two encoders exist: "dsv32" (DeepSeek-V3.2 / Speciale, DeepSeek's Python encoder) and
// "v31" (the Jinja chat template of V3.1 / V3.2-Exp, rendered natively; only templates
// whose fingerprint is known are accepted).
#pragma once
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "chat/request.h"

namespace ds::chat {

struct EncodedPrompt {
  std::string text;
  // True when the prompt leaves a <think> block open: generation starts inside reasoning,
  // so the reasoning parser must start in the "in reasoning" state.
  bool starts_in_reasoning = false;
};

class ChatEncoder {
 public:
  virtual ~ChatEncoder() = default;
  virtual std::string name() const = 0;
  // Throws RequestError for requests this format cannot express.
  virtual EncodedPrompt encode(const ChatRequest& request) const = 0;
};

// True if the last "<think>" in `prompt` is not closed by a later "</think>".
bool prompt_opens_reasoning(const std::string& prompt);

std::unique_ptr<ChatEncoder> make_dsv32_encoder();
// `template_source` is the template text after loading (see load_chat_template_file);
// throws ds::Error naming the template when its fingerprint is unknown.
std::unique_ptr<ChatEncoder> make_template_encoder(const std::string& template_source,
                                                   const std::string& origin);

// What a checkpoint says about its chat format.
struct CheckpointChatInfo {
  std::string model_type;                     // config.json model_type ("" if absent)
  std::vector<std::string> architectures;     // config.json architectures
  std::optional<std::string> chat_template;   // tokenizer_config.json chat_template
};
// Reads config.json / tokenizer_config.json from `dir` (either may be missing).
CheckpointChatInfo read_checkpoint_chat_info(const std::filesystem::path& dir);

// A --chat-template FILE as SGLang loads it: a .jinja file has surrounding newlines
// stripped and the two characters "\n" turned into newlines; a .json file is a
// tokenizer_config.json whose chat_template is used as is.
std::string load_chat_template_file(const std::filesystem::path& file);

// Picks the encoder. `override_name`: "" or "auto" (decide from the checkpoint), "dsv32",
// "v31". `template_override`: the source of --chat-template, if given.
// auto: a chat template (override, else tokenizer_config) -> v31 renderer (fingerprint
// checked); no template and a DeepSeek-V3.2 architecture -> dsv32; otherwise an error.
std::unique_ptr<ChatEncoder> select_encoder(const CheckpointChatInfo& info,
                                            const std::string& override_name,
                                            const std::optional<std::string>& template_override);

}  // namespace ds::chat
