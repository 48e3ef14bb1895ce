// The thinking switch in all its spellings (SGLang's chat_template_kwargs, DeepSeek's `thinking`
// object, top-level enable_thinking, OpenAI's reasoning_effort): which wins, what reaches the
// encoder, and clear errors for values that mean nothing.
#include <gtest/gtest.h>

#include "chat/encoder.h"
#include "chat/errors.h"
#include "chat/thinking_switch.h"

using namespace ds::chat;

namespace {

Json body_with(const Json& extra) {
  Json b = {{"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}};
  for (auto it = extra.begin(); it != extra.end(); ++it) b[it.key()] = it.value();
  return b;
}

std::optional<bool> decided(const char* extra_json) { return thinking_switch(body_with(Json::parse(extra_json))); }

}  // namespace

TEST(ThinkingSwitch, EachSpellingAlone) {
  EXPECT_EQ(decided("{}"), std::nullopt);
  EXPECT_EQ(decided(R"({"chat_template_kwargs": {"thinking": true}})"), true);
  EXPECT_EQ(decided(R"({"chat_template_kwargs": {"thinking": 0}})"), false);
  EXPECT_EQ(decided(R"({"chat_template_kwargs": {"enable_thinking": true}})"), true);
  EXPECT_EQ(decided(R"({"thinking": {"type": "enabled"}})"), true);
  EXPECT_EQ(decided(R"({"thinking": {"type": "disabled"}})"), false);
  EXPECT_EQ(decided(R"({"thinking": true})"), true);
  EXPECT_EQ(decided(R"({"enable_thinking": true})"), true);
  EXPECT_EQ(decided(R"({"enable_thinking": false})"), false);
  EXPECT_EQ(decided(R"({"reasoning_effort": "none"})"), false);
  for (const char* e : {"low", "medium", "high"})
    EXPECT_EQ(thinking_switch(body_with({{"reasoning_effort", e}})), true) << e;
  EXPECT_EQ(decided(R"({"thinking": null, "reasoning_effort": null})"), std::nullopt);
}

TEST(ThinkingSwitch, PrecedenceIsTheDocumentedOrder) {
  // 1. kwargs.thinking over everything.
  EXPECT_EQ(decided(R"({"chat_template_kwargs": {"thinking": false, "enable_thinking": true},
                        "thinking": {"type": "enabled"}, "enable_thinking": true, "reasoning_effort": "high"})"),
            false);
  // 2. kwargs.enable_thinking over the top-level spellings.
  EXPECT_EQ(decided(R"({"chat_template_kwargs": {"enable_thinking": false}, "thinking": {"type": "enabled"}})"),
            false);
  // 3. DeepSeek's object over enable_thinking and reasoning_effort.
  EXPECT_EQ(decided(R"({"thinking": {"type": "disabled"}, "enable_thinking": true, "reasoning_effort": "high"})"),
            false);
  // 4. enable_thinking over reasoning_effort.
  EXPECT_EQ(decided(R"({"enable_thinking": true, "reasoning_effort": "none"})"), true);
}

TEST(ThinkingSwitch, BadValuesNameTheField) {
  auto message = [](const char* extra) {
    try {
      decided(extra);
    } catch (const RequestError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(R"({"thinking": {"type": "auto"}})").find("thinking.type must be 'enabled' or 'disabled'"),
            std::string::npos);
  EXPECT_NE(message(R"({"thinking": "yes"})").find("thinking must be an object"), std::string::npos);
  EXPECT_NE(message(R"({"enable_thinking": "yes"})").find("enable_thinking must be a boolean"), std::string::npos);
  EXPECT_NE(message(R"({"reasoning_effort": "minimal"})").find("reasoning_effort 'minimal' is not supported"),
            std::string::npos);
  EXPECT_NE(message(R"({"reasoning_effort": 3})").find("reasoning_effort must be a string"), std::string::npos);
  // A malformed losing spelling is still refused by the request parser.
  EXPECT_THROW(parse_chat_request(body_with(Json::parse(
                   R"({"chat_template_kwargs": {"thinking": true}, "thinking": {"type": "maybe"}})"))),
               RequestError);
}

TEST(ThinkingSwitch, ReachesTheEncoder) {
  auto enc = make_dsv32_encoder();
  const auto think = enc->encode(parse_chat_request(body_with({{"thinking", {{"type", "enabled"}}}})));
  const auto chat = enc->encode(parse_chat_request(body_with({{"thinking", {{"type", "disabled"}}}})));
  const auto plain = enc->encode(parse_chat_request(body_with(Json::object())));
  EXPECT_TRUE(think.starts_in_reasoning);
  EXPECT_FALSE(chat.starts_in_reasoning);
  EXPECT_EQ(chat.text, plain.text);  // off is the default
  EXPECT_EQ(enc->encode(parse_chat_request(body_with({{"reasoning_effort", "high"}}))).text, think.text);
  EXPECT_EQ(enc->encode(parse_chat_request(body_with({{"enable_thinking", true}}))).text, think.text);
  // The folded value is visible to templates as `thinking`.
  auto req = parse_chat_request(body_with({{"reasoning_effort", "low"}}));
  EXPECT_EQ(req.template_kwargs["thinking"], true);
}
