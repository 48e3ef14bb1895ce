// Which chat encoder a checkpoint (or a command-line override) asks for.
#include <fstream>
#include <sstream>

#include "chat/encoder.h"
#include "util/error.h"

namespace ds::chat {
namespace {

std::optional<Json> read_json_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  Json j;
  if (!try_parse_json(ss.str(), j)) ds::fail("{} is not valid JSON", p.string());
  return j;
}

bool is_deepseek_v32(const CheckpointChatInfo& info) {
  if (info.model_type == "deepseek_v32") return true;
  for (const auto& a : info.architectures)
    if (a == "DeepseekV32ForCausalLM") return true;
  return false;
}

}  // namespace

CheckpointChatInfo read_checkpoint_chat_info(const std::filesystem::path& dir) {
  CheckpointChatInfo info;
  if (auto cfg = read_json_file(dir / "config.json")) {
    if (cfg->contains("model_type") && (*cfg)["model_type"].is_string())
      info.model_type = (*cfg)["model_type"].get<std::string>();
    if (cfg->contains("architectures") && (*cfg)["architectures"].is_array())
      for (const auto& a : (*cfg)["architectures"])
        if (a.is_string()) info.architectures.push_back(a.get<std::string>());
  }
  if (auto tok = read_json_file(dir / "tokenizer_config.json")) {
    if (tok->contains("chat_template")) {
      const Json& t = (*tok)["chat_template"];
      if (t.is_string()) {
        info.chat_template = t.get<std::string>();
      } else if (!t.is_null()) {
        ds::fail("{}: chat_template is not a single string (named template lists are not supported)",
                 (dir / "tokenizer_config.json").string());
      }
    }
  }
  return info;
}

std::string load_chat_template_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) ds::fail("cannot read chat template {}", file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (file.extension() == ".json") {
    Json j;
    if (!try_parse_json(text, j) || !j.is_object() || !j.contains("chat_template") ||
        !j["chat_template"].is_string())
      ds::fail("{} has no string chat_template", file.string());
    return j["chat_template"].get<std::string>();
  }
  // As SGLang's TemplateManager loads a .jinja file.
  size_t b = text.find_first_not_of('\n');
  size_t e = text.find_last_not_of('\n');
  text = (b == std::string::npos) ? "" : text.substr(b, e - b + 1);
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::unique_ptr<ChatEncoder> select_encoder(const CheckpointChatInfo& info,
                                            const std::string& override_name,
                                            const std::optional<std::string>& template_override) {
  const std::optional<std::string>& tmpl = template_override ? template_override : info.chat_template;
  const std::string origin = template_override ? "--chat-template" : "tokenizer_config.json";
  if (override_name == "dsv32") return make_dsv32_encoder();
  if (override_name == "v31") {
    if (!tmpl) ds::fail("encoder v31 needs a chat template (tokenizer_config.json or --chat-template)");
    return make_template_encoder(*tmpl, origin);
  }
  if (!override_name.empty() && override_name != "auto")
    ds::fail("unknown chat encoder '{}' (expected auto, dsv32 or v31)", override_name);
  if (tmpl) return make_template_encoder(*tmpl, origin);
  if (is_deepseek_v32(info)) return make_dsv32_encoder();
  ds::fail("cannot choose a chat format: no chat template and the model (model_type '{}') is not "
           "DeepSeek-V3.2; pass --chat-template or --encoder dsv32", info.model_type);
}

}  // namespace ds::chat
