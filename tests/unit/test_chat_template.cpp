// V3.1 / V3.2-Exp chat templates rendered natively, compared byte for byte with prompts
// that real Jinja2 produced (tools/reference/render_chat_template.py), and the choice of
// encoder from a checkpoint.
#include <gtest/gtest.h>

#include <filesystem>

#include "chat/encoder.h"
#include "chat/errors.h"
#include "chat_test_util.h"

using namespace ds::chat;
using ds::chat::test::fixture_path;
namespace fs = std::filesystem;

namespace {

struct TemplateFixture {
  const char* id;    // the id used in the expected-prompt file names
  const char* file;  // relative to tests/fixtures/chat
};
const TemplateFixture kTemplates[] = {
    {"sglang-deepseekv31", "templates/tool_chat_template_deepseekv31.jinja"},
    {"sglang-deepseekv32", "templates/tool_chat_template_deepseekv32.jinja"},
    {"deepseek-v32-exp", "checkpoints/v32exp/tokenizer_config.json"},
};

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  const std::string suffix = ".request.json";
  for (const auto& e : fs::directory_iterator(fixture_path("v31_cases"))) {
    std::string f = e.path().filename().string();
    if (f.size() > suffix.size() && f.substr(f.size() - suffix.size()) == suffix)
      names.push_back(f.substr(0, f.size() - suffix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST(ChatTemplate, MatchesJinja2ByteForByte) {
  auto names = case_names();
  ASSERT_GE(names.size(), 15u);
  int compared = 0, errors = 0;
  for (const auto& t : kTemplates) {
    auto encoder = make_template_encoder(load_chat_template_file(fixture_path(t.file)), t.file);
    for (const auto& name : names) {
      SCOPED_TRACE(std::string(t.id) + " / " + name);
      ChatRequest req = parse_chat_request(test::read_json(fixture_path("v31_cases/" + name + ".request.json")));
      const std::string expected_path = fixture_path("v31_cases/" + name + "." + t.id + ".prompt.txt");
      if (fs::exists(expected_path)) {
        EXPECT_EQ(encoder->encode(req).text, test::read_file(expected_path));
        ++compared;
      } else {  // Jinja2 raised: so must we, as a request error
        EXPECT_THROW(encoder->encode(req), RequestError);
        ++errors;
      }
    }
  }
  EXPECT_GE(compared, 45);
  EXPECT_GE(errors, 1);
}

TEST(ChatTemplate, ReasoningStateFollowsThePrompt) {
  auto encoder = make_template_encoder(
      load_chat_template_file(fixture_path("checkpoints/v32exp/tokenizer_config.json")), "test");
  auto think = parse_chat_request(Json::parse(
      R"({"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"thinking":true}})"));
  EXPECT_TRUE(encoder->encode(think).starts_in_reasoning);
  auto chat = parse_chat_request(Json::parse(R"({"messages":[{"role":"user","content":"x"}]})"));
  EXPECT_FALSE(encoder->encode(chat).starts_in_reasoning);
}

TEST(ChatTemplate, AnyTemplateRendersAndUnsupportedConstructsAreNamed) {
  // Not a known text: interpreted, not fingerprinted.
  auto enc = make_template_encoder("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
                                   "my.jinja");
  auto req = parse_chat_request(Json::parse(R"({"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_EQ(enc->encode(req).text, "<｜begin▁of▁sentence｜>[user]hi");
  auto refused = [](const std::string& tmpl, const std::string& construct) {
    try {
      make_template_encoder(tmpl, "my.jinja");
      ADD_FAILURE() << "accepted " << tmpl;
    } catch (const ds::Error& e) {
      EXPECT_NE(std::string(e.what()).find("my.jinja"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(construct), std::string::npos) << e.what();
    }
  };
  refused("{% include 'other.jinja' %}", "'{% include %}' statement is not supported");
  refused("{{ messages|wordwrap(10) }}", "the filter 'wordwrap' is not supported");
  refused("{% if x is prime %}{% endif %}", "the test 'prime' is not supported");
  refused("{% for m in messages %}", "missing '{% endfor %}'");
}

TEST(ChatTemplate, RaiseExceptionIsARequestError) {
  auto encoder = make_template_encoder(
      "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok",
      "test");
  try {
    encoder->encode(parse_chat_request(Json::parse(R"({"messages":[{"role":"assistant","content":"x"}]})")));
    FAIL() << "no error";
  } catch (const RequestError& e) {
    EXPECT_NE(std::string(e.what()).find("first message must be from the user"), std::string::npos);
  }
  EXPECT_EQ(encoder->encode(parse_chat_request(Json::parse(R"({"messages":[{"role":"user","content":"x"}]})"))).text,
            "ok");
}

TEST(ChatEncoderSelection, FromCheckpointFiles) {
  CheckpointChatInfo v32exp = read_checkpoint_chat_info(fixture_path("checkpoints/v32exp"));
  ASSERT_TRUE(v32exp.chat_template.has_value());
  EXPECT_EQ(select_encoder(v32exp, "auto", std::nullopt)->name(), "jinja");
  EXPECT_EQ(select_encoder(v32exp, "dsv32", std::nullopt)->name(), "dsv32");

  CheckpointChatInfo v32;  // DeepSeek-V3.2: no chat template, V3.2 architecture
  v32.model_type = "deepseek_v32";
  v32.architectures = {"DeepseekV32ForCausalLM"};
  EXPECT_EQ(select_encoder(v32, "auto", std::nullopt)->name(), "dsv32");
  EXPECT_THROW(select_encoder(v32, "v31", std::nullopt), ds::Error);
  auto sglang = load_chat_template_file(fixture_path("templates/tool_chat_template_deepseekv32.jinja"));
  EXPECT_EQ(select_encoder(v32, "auto", sglang)->name(), "jinja");

  CheckpointChatInfo other;
  other.model_type = "llama";
  EXPECT_THROW(select_encoder(other, "auto", std::nullopt), ds::Error);
  EXPECT_THROW(select_encoder(v32, "jinja", std::nullopt), ds::Error);
}
