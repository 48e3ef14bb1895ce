// DeepSeek-V3.2 encoding: byte-exact against DeepSeek's gold prompt, plus the request
// handling around it (tools on a leading system message, chat mode, bad requests).
#include <gtest/gtest.h>

#include "chat/dsv32_format.h"
#include "chat/encoder.h"
#include "chat/errors.h"
#include "chat_test_util.h"

using namespace ds::chat;
using ds::chat::test::fixture_path;

namespace {

Json gold_messages() {
  Json input = test::read_json(fixture_path("dsv32/test_input.json"));
  Json messages = input["messages"];
  messages[0]["tools"] = input["tools"];  // as DeepSeek's test_encoding_dsv32.py feeds it
  return messages;
}

EncodedPrompt encode(const std::string& body) {
  return make_dsv32_encoder()->encode(parse_chat_request(Json::parse(body)));
}

}  // namespace

TEST(ChatDsv32, GoldPromptThinkingModeByteExact) {
  dsv32::EncodeOptions opts;  // thinking, drop_thinking, bos: the gold configuration
  std::string prompt = dsv32::encode_messages(gold_messages(), opts);
  std::string gold = test::strip(test::read_file(fixture_path("dsv32/test_output.txt")));
  ASSERT_EQ(prompt.size(), gold.size());
  EXPECT_EQ(prompt, gold);
}

TEST(ChatDsv32, GoldRequestThroughTheOpenAIPathMatchesToo) {
  // The same conversation as an OpenAI request: tools at the top level attach to the
  // existing leading system message, thinking comes from chat_template_kwargs.
  Json input = test::read_json(fixture_path("dsv32/test_input.json"));
  Json body = {{"messages", input["messages"]}, {"tools", input["tools"]},
               {"chat_template_kwargs", {{"thinking", true}}}};
  EncodedPrompt p = make_dsv32_encoder()->encode(parse_chat_request(body));
  EXPECT_EQ(p.text, test::strip(test::read_file(fixture_path("dsv32/test_output.txt"))));
  EXPECT_FALSE(p.starts_in_reasoning);  // ends after an assistant turn
}

TEST(ChatDsv32, ChatAndThinkingGenerationPrompt) {
  auto chat = encode(R"({"messages":[{"role":"user","content":"hello"}]})");
  EXPECT_EQ(chat.text, "<｜begin▁of▁sentence｜><｜User｜>hello<｜Assistant｜></think>");
  EXPECT_FALSE(chat.starts_in_reasoning);
  auto think = encode(R"({"messages":[{"role":"user","content":"hello"}],"chat_template_kwargs":{"thinking":true}})");
  EXPECT_EQ(think.text, "<｜begin▁of▁sentence｜><｜User｜>hello<｜Assistant｜><think>");
  EXPECT_TRUE(think.starts_in_reasoning);
  auto alias = encode(R"({"messages":[{"role":"user","content":"hello"}],"chat_template_kwargs":{"enable_thinking":true}})");
  EXPECT_EQ(alias.text, think.text);
}

TEST(ChatDsv32, MultiTurnDropsEarlierReasoning) {
  auto p = encode(R"({"messages":[
    {"role":"system","content":"You are a helpful assistant."},
    {"role":"user","content":"hello"},
    {"role":"assistant","content":"Hello! I am DeepSeek.","reasoning_content":"thinking..."},
    {"role":"user","content":"1+1=?"}],"chat_template_kwargs":{"thinking":true}})");
  EXPECT_EQ(p.text,
            "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>hello<｜Assistant｜></think>"
            "Hello! I am DeepSeek.<｜end▁of▁sentence｜><｜User｜>1+1=?<｜Assistant｜><think>");
}

TEST(ChatDsv32, ToolsWithoutSystemMessageGetALeadingOne) {
  auto p = encode(R"({"messages":[{"role":"user","content":"Hi"}],
    "tools":[{"type":"function","function":{"name":"lookup","description":"Look","parameters":{"type":"object"}}}]})");
  const std::string head = "<｜begin▁of▁sentence｜>\n\n## Tools\n\nYou have access to a set of tools";
  EXPECT_EQ(p.text.substr(0, head.size()), head);
  EXPECT_NE(p.text.find("<functions>\n{\"name\": \"lookup\", \"description\": \"Look\", \"parameters\": "
                        "{\"type\": \"object\"}}\n</functions>\n<｜User｜>Hi<｜Assistant｜></think>"),
            std::string::npos);
}

TEST(ChatDsv32, ToolCallArgumentsAndResults) {
  auto p = encode(R"({"messages":[
    {"role":"user","content":"天气?"},
    {"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":
      {"name":"w","arguments":"{\"city\": \"杭州\", \"days\": 2, \"opts\": {\"a\": [1, 2.5, null, true]}}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"晴"}]})");
  EXPECT_EQ(p.text,
            "<｜begin▁of▁sentence｜><｜User｜>天气?<｜Assistant｜></think>\n\n<｜DSML｜function_calls>\n"
            "<｜DSML｜invoke name=\"w\">\n"
            "<｜DSML｜parameter name=\"city\" string=\"true\">杭州</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"a\": [1, 2.5, null, true]}</｜DSML｜parameter>\n"
            "</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>\n\n<function_results>\n"
            "<result>晴</result>\n</function_results>\n\n</think>");
}

TEST(ChatDsv32, ContentPartsAndContinueFinalMessage) {
  auto p = encode(R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
    {"role":"assistant","content":"Sure, "}],"continue_final_message":true})");
  EXPECT_EQ(p.text, "<｜begin▁of▁sentence｜><｜User｜>a b<｜Assistant｜></think>Sure, ");
}

TEST(ChatDsv32, BadRequestsNameTheField) {
  auto expect_error = [](const std::string& body, const std::string& needle) {
    try {
      encode(body);
      ADD_FAILURE() << "no error for " << body;
    } catch (const RequestError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"messages":[]})", "messages must not be empty");
  expect_error(R"({})", "messages must be an array");
  expect_error(R"({"messages":[{"role":"wizard","content":"x"}]})", "messages[0].role");
  expect_error(R"({"messages":[{"role":"user","content":5}]})", "messages[0].content");
  expect_error(R"({"messages":[{"role":"user","content":"x"},{"role":"tool","content":"r"}]})",
               "messages[1]: a tool message must follow");
  expect_error(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "content[0].type");
  expect_error(R"({"messages":[{"role":"user","content":"x"}],"tools":[{"function":{}}]})",
               "tools[0].function.name");
  expect_error(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":
    [{"function":{"name":"f","arguments":"{bad"}}]}]})", "not valid JSON");
  expect_error(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],
    "chat_template_kwargs":{"thinking":true}})", "needs reasoning_content");
  expect_error(R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":"yes"})",
               "add_generation_prompt");
}

TEST(ChatJson, PythonJsonDumps) {
  EXPECT_EQ(python_json_dumps(Json::parse(R"({"b":1,"a":[true,null,"x\"\n\u0001é"],"c":{}})")),
            "{\"b\": 1, \"a\": [true, null, \"x\\\"\\n\\u0001é\"], \"c\": {}}");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(0.00001), "1e-05");
  EXPECT_EQ(python_float_repr(-2.5e-7), "-2.5e-07");
  EXPECT_EQ(python_float_repr(123456789.125), "123456789.125");
  EXPECT_EQ(python_float_repr(1.7976931348623157e308), "1.7976931348623157e+308");
}

TEST(ChatDsv32, GoldSearchPromptPrefixByteExact) {
  // The first three messages of DeepSeek's test_input_search_wo_date.json (a developer
  // turn carrying tools, a reasoning + tool-call turn, a tool result) and the matching
  // prefix of test_output_search_wo_date.txt. The later messages are all assistant/tool
  // turns after the only developer turn, so the full prompt starts with exactly this text.
  Json input = test::read_json(fixture_path("dsv32/search_wo_date_prefix_input.json"));
  std::string prompt = dsv32::encode_messages(input["messages"], {});
  std::string gold = test::strip(test::read_file(fixture_path("dsv32/search_wo_date_prefix_output.txt")));
  EXPECT_EQ(prompt, gold);
}
