// `dsserve chat-template`: prints the exact prompt the server would build for an OpenAI
// chat request body — a debugging aid and the hook for the live Jinja2 comparison test.
#include <fstream>
#include <iostream>
#include <sstream>

#include "chat/encoder.h"
#include "chat/request.h"
#include "cli/commands.h"
#include "util/error.h"

namespace ds::cli {
namespace {

struct ChatTemplateArgs {
  std::string tokenizer;
  std::string request;
  std::string encoder = "auto";
  std::string chat_template;
};

void run_chat_template(const ChatTemplateArgs& a) {
  namespace fs = std::filesystem;
  fs::path dir = fs::is_directory(a.tokenizer) ? fs::path(a.tokenizer) : fs::path(a.tokenizer).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::exists(a.tokenizer)) ds::fail("--tokenizer {}: no such file or directory", a.tokenizer);
  chat::CheckpointChatInfo info = chat::read_checkpoint_chat_info(dir);
  std::optional<std::string> tmpl;
  if (!a.chat_template.empty()) tmpl = chat::load_chat_template_file(a.chat_template);
  auto encoder = chat::select_encoder(info, a.encoder, tmpl);

  std::ifstream in(a.request, std::ios::binary);
  if (!in) ds::fail("cannot read request {}", a.request);
  std::stringstream ss;
  ss << in.rdbuf();
  chat::Json body;
  if (!chat::try_parse_json(ss.str(), body)) ds::fail("{} is not valid JSON", a.request);
  chat::EncodedPrompt prompt = encoder->encode(chat::parse_chat_request(body));
  std::cout.write(prompt.text.data(), static_cast<std::streamsize>(prompt.text.size()));
  std::cout.flush();
}

}  // namespace

void register_chat_template(CLI::App& app) {
  auto args = std::make_shared<ChatTemplateArgs>();
  auto* cmd = app.add_subcommand("chat-template",
                                 "Print the exact prompt for an OpenAI chat request body");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json file or checkpoint dir (config.json / tokenizer_config.json are read next to it)")
      ->required();
  cmd->add_option("--request", args->request, "JSON file with an OpenAI /v1/chat/completions body")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--encoder", args->encoder, "auto, dsv32 or v31")
      ->check(CLI::IsMember({"auto", "dsv32", "v31"}));
  cmd->add_option("--chat-template", args->chat_template,
                  "a .jinja file or tokenizer_config.json whose template replaces the checkpoint's")
      ->check(CLI::ExistingFile);
  cmd->callback([args] { run_chat_template(*args); });
}

}  // namespace ds::cli
