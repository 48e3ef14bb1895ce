// /v1/responses over the fake engine: the translation of input items into a chat request, the
// response object (output items, status, usage), the streaming events, and clear 400s for what a
// stateless server cannot do.
#include <gtest/gtest.h>

#include "server/responses_request.h"
#include "server_test_util.h"

namespace ds::server::testing {
namespace {

const char* kCall =
    "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls>";

Json weather_tool() {
  return Json::array({{{"type", "function"},
                       {"name", "get_weather"},
                       {"description", "weather of a city"},
                       {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}});
}

std::string prompt_of(Harness& h, size_t k = 0) { return h.tok.decode(h.engine.submitted()[k].prompt, false); }

}  // namespace

TEST(ServerResponses, InputItemsBecomeChatMessages) {
  Json body = Json::parse(R"({
    "model": "m", "instructions": "Be brief.", "max_output_tokens": 7, "temperature": 0.5,
    "reasoning": {"effort": "high"}, "tool_choice": {"type": "function", "name": "get_weather"},
    "input": [
      {"role": "user", "content": "weather?"},
      {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Use the tool."}]},
      {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
      {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
      {"role": "user", "content": [{"type": "input_text", "text": "and "}, {"type": "input_text", "text": "Rome?"}]}
    ]})");
  body["tools"] = weather_tool();
  Json chat = responses_to_chat(body);
  const Json want_messages = Json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": "", "reasoning_content": "Use the tool.",
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "assistant", "content": "Sunny."},
    {"role": "user", "content": "and Rome?"}])");
  EXPECT_EQ(chat["messages"], want_messages);
  EXPECT_EQ(chat["max_tokens"], 7);
  EXPECT_EQ(chat["temperature"], 0.5);
  EXPECT_EQ(chat["reasoning_effort"], "high");
  EXPECT_EQ(chat["tool_choice"], Json::parse(R"({"type": "function", "function": {"name": "get_weather"}})"));
  EXPECT_EQ(chat["tools"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(chat["tools"][0]["function"]["parameters"]["type"], "object");
  // A plain string input is one user message.
  EXPECT_EQ(responses_to_chat(Json{{"input", "hi"}})["messages"], Json::parse(R"([{"role":"user","content":"hi"}])"));
}

TEST(ServerResponses, WholeResponseShape) {
  Harness h;
  auto r = h.post("/v1/responses", Json{{"input", "hello"}, {"max_output_tokens", 4}, {"instructions", "Be nice."}});
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = body_json(*r);
  EXPECT_EQ(j["id"].get<std::string>().rfind("resp_", 0), 0u);
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["model"], "test-model");
  EXPECT_EQ(j["status"], "incomplete");  // the fake echoes the prompt: 4 tokens hit the limit
  EXPECT_EQ(j["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(j["instructions"], "Be nice.");
  EXPECT_EQ(j["max_output_tokens"], 4);
  ASSERT_EQ(j["output"].size(), 1u);
  const Json& msg = j["output"][0];
  EXPECT_EQ(msg["type"], "message");
  EXPECT_EQ(msg["role"], "assistant");
  EXPECT_EQ(msg["status"], "incomplete");
  EXPECT_EQ(msg["id"].get<std::string>().rfind("msg_", 0), 0u);
  EXPECT_EQ(msg["content"][0]["type"], "output_text");
  EXPECT_FALSE(msg["content"][0]["text"].get<std::string>().empty());
  const auto sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].max_new_tokens, 4);
  EXPECT_NE(prompt_of(h).find("Be nice."), std::string::npos);  // instructions lead the prompt
  EXPECT_EQ(j["usage"]["input_tokens"], sub[0].prompt.size());
  EXPECT_EQ(j["usage"]["output_tokens"], 4);
  EXPECT_EQ(j["usage"]["total_tokens"], sub[0].prompt.size() + 4);
  EXPECT_EQ(j["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
}

TEST(ServerResponses, ReasoningAndFunctionCallItems) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) {
    FakeScript s{{"Let me", " check", "</think>", "Looking."}, true};
    std::string t = kCall;
    for (size_t i = 0; i < t.size(); i += 9) s.pieces.push_back(t.substr(i, 9));
    return s;
  });
  Json body = {{"input", "weather in Paris?"}, {"tools", weather_tool()}, {"reasoning", {{"effort", "medium"}}}};
  Json j = body_json(*h.post("/v1/responses", body));
  EXPECT_EQ(j["status"], "completed");
  EXPECT_TRUE(j["incomplete_details"].is_null());
  ASSERT_EQ(j["output"].size(), 3u) << j.dump();
  EXPECT_EQ(j["output"][0]["type"], "reasoning");
  EXPECT_EQ(j["output"][0]["content"][0]["text"], "Let me check");
  EXPECT_EQ(j["output"][1]["type"], "message");
  EXPECT_EQ(j["output"][1]["content"][0]["text"], "Looking.");
  const Json& fc = j["output"][2];
  EXPECT_EQ(fc["type"], "function_call");
  EXPECT_EQ(fc["name"], "get_weather");
  EXPECT_EQ(fc["status"], "completed");
  EXPECT_EQ(fc["call_id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(Json::parse(fc["arguments"].get<std::string>()), Json({{"city", "Paris"}}));
  EXPECT_EQ(j["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
  EXPECT_EQ(j["reasoning"]["effort"], "medium");
  EXPECT_EQ(j["tools"], weather_tool());
  // reasoning.effort medium turned thinking on; the tools reached the prompt.
  EXPECT_TRUE(prompt_of(h).ends_with("<think>"));
  EXPECT_NE(prompt_of(h).find("get_weather"), std::string::npos);
}

TEST(ServerResponses, StreamingEventsRebuildTheResponse) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) {
    FakeScript s{{"Hmm", "</think>", "It is", " sunny."}, true};
    std::string t = kCall;
    for (size_t i = 0; i < t.size(); i += 5) s.pieces.push_back(t.substr(i, 5));
    return s;
  });
  Json body = {{"input", "weather?"}, {"tools", weather_tool()}, {"stream", true}, {"reasoning", {{"effort", "low"}}}};
  auto r = h.post("/v1/responses", body);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("event: response.created\ndata: "), std::string::npos);
  auto events = sse_events(r->body);
  ASSERT_GE(events.size(), 10u);
  std::vector<std::string> types;
  std::string reasoning, text, args;
  for (size_t k = 0; k < events.size(); ++k) {
    const Json& e = events[k];
    EXPECT_EQ(e["sequence_number"], k);
    types.push_back(e["type"]);
    if (e["type"] == "response.reasoning_text.delta") reasoning += e["delta"].get<std::string>();
    if (e["type"] == "response.output_text.delta") text += e["delta"].get<std::string>();
    if (e["type"] == "response.function_call_arguments.delta") args += e["delta"].get<std::string>();
  }
  EXPECT_EQ(types.front(), "response.created");
  EXPECT_EQ(types[1], "response.in_progress");
  EXPECT_EQ(types.back(), "response.completed");
  auto count = [&](const char* t) { return std::count(types.begin(), types.end(), std::string(t)); };
  EXPECT_EQ(count("response.output_item.added"), 3);
  EXPECT_EQ(count("response.output_item.done"), 3);
  EXPECT_EQ(count("response.content_part.added"), 1);
  EXPECT_EQ(count("response.output_text.done"), 1);
  EXPECT_EQ(count("response.reasoning_text.done"), 1);
  EXPECT_EQ(count("response.function_call_arguments.done"), 1);
  const Json& final_response = events.back()["response"];
  EXPECT_EQ(final_response["status"], "completed");
  ASSERT_EQ(final_response["output"].size(), 3u);
  EXPECT_EQ(final_response["output"][0]["content"][0]["text"], reasoning);
  EXPECT_EQ(final_response["output"][1]["content"][0]["text"], text);
  EXPECT_EQ(final_response["output"][2]["arguments"], args);
  EXPECT_EQ(reasoning, "Hmm");
  EXPECT_EQ(text, "It is sunny.");
  EXPECT_EQ(Json::parse(args), Json({{"city", "Paris"}}));
  // created carries the in-progress response with the same id and no output yet.
  EXPECT_EQ(events[0]["response"]["id"], final_response["id"]);
  EXPECT_EQ(events[0]["response"]["status"], "in_progress");
  EXPECT_TRUE(events[0]["response"]["output"].empty());
}

TEST(ServerResponses, StatelessAndUnsupportedAreClear400s) {
  Harness h;
  auto refused = [&](const Json& body, const std::string& param, const std::string& text) {
    auto r = h.post("/v1/responses", body);
    EXPECT_EQ(r->status, 400) << body.dump();
    Json e = body_json(*r)["error"];
    EXPECT_EQ(e["param"], param) << e.dump();
    EXPECT_NE(e["message"].get<std::string>().find(text), std::string::npos) << e.dump();
  };
  refused({{"input", "x"}, {"previous_response_id", "resp_1"}}, "previous_response_id", "stateless");
  refused({{"input", Json::array({{{"type", "item_reference"}, {"id", "msg_1"}}})}}, "input[0]", "stateless");
  refused(Json::object(), "input", "input is required");
  refused({{"input", "x"}, {"tools", Json::array({{{"type", "web_search"}}})}}, "tools[0].type", "function tools only");
  refused({{"input", Json::array({{{"role", "user"}, {"content", Json::array({{{"type", "input_image"}}})}}})}},
          "input[0].content[0].type", "text only");
  refused({{"input", "x"}, {"text", {{"format", {{"type", "json_schema"}}}}}}, "text.format", "not supported");
  refused({{"input", "x"}, {"reasoning", {{"effort", "minimal"}}}}, "reasoning_effort", "not supported");
  auto unknown_model = h.post("/v1/responses", Json{{"input", "x"}, {"model", "other"}});
  EXPECT_EQ(unknown_model->status, 404);
  EXPECT_EQ(body_json(*unknown_model)["error"]["code"], "model_not_found");
  EXPECT_TRUE(h.engine.submitted().empty());
}

}  // namespace ds::server::testing
