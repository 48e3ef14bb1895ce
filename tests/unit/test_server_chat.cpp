// /v1/chat/completions over the fake engine: response and chunk shapes, usage, reasoning and tool
// calls through the output parsers, stop strings, n > 1, logprobs, disconnect and abort.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "chat/tool_parser.h"
#include "grammar/matcher.h"
#include "server_test_util.h"

namespace ds::server::testing {
namespace {

FakeScript pieces(std::vector<std::string> p, bool eos = true) { return FakeScript{std::move(p), eos}; }

TEST(ServerChat, NonStreamingShapeAndUsage) {
  Harness h;
  auto r = h.post("/v1/chat/completions", user_chat("hello there", {{"max_tokens", 5}, {"temperature", 0}}));
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->content_type, "application/json");
  Json j = body_json(*r);
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "test-model");
  EXPECT_TRUE(j["created"].is_number_integer());
  ASSERT_EQ(j["choices"].size(), 1u);
  const Json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_TRUE(c["message"]["content"].is_string());
  EXPECT_TRUE(c["message"]["reasoning_content"].is_null());
  EXPECT_FALSE(c["message"].contains("tool_calls"));
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_TRUE(c["logprobs"].is_null());

  auto sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].max_new_tokens, 5);
  EXPECT_EQ(sub[0].sampling.temperature, 0.0f);
  EXPECT_EQ(j["id"], sub[0].id);  // json on the left: g++ 13 with nlohmann 3.11.3 finds no string == json
  // The prompt is the dsv32 encoding of the message, tokenized.
  auto prompt = chat::make_dsv32_encoder()->encode(chat::parse_chat_request(user_chat("hello there"))).text;
  EXPECT_EQ(sub[0].prompt, h.tok.encode(prompt, false));
  // The fake echoes the prompt from its first token (greedy).
  std::string expect;
  for (int i = 0; i < 5; ++i) {
    const int32_t one[] = {sub[0].prompt[i]};
    expect += h.tok.decode(one, true);
  }
  EXPECT_EQ(c["message"]["content"], expect);

  const Json& u = j["usage"];
  EXPECT_EQ(u["prompt_tokens"], sub[0].prompt.size());
  EXPECT_EQ(u["completion_tokens"], 5);
  EXPECT_EQ(u["total_tokens"], sub[0].prompt.size() + 5);
  EXPECT_EQ(u["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(u["completion_tokens_details"]["reasoning_tokens"], 0);
}

TEST(ServerChat, StreamingChunksUsageAndDone) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) { return pieces({"Hel", "lo", " world"}); });
  auto r = h.post("/v1/chat/completions",
                  user_chat("hi", {{"stream", true}, {"stream_options", {{"include_usage", true}}}}));
  ASSERT_EQ(r->status, 200);
  EXPECT_TRUE(r->streamed);
  EXPECT_EQ(r->content_type.rfind("text/event-stream", 0), 0u);
  auto ev = sse_events(r->body);
  ASSERT_GE(ev.size(), 6u) << r->body;
  EXPECT_EQ(ev.back(), "[DONE]");
  EXPECT_EQ(ev[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(ev[0].contains("usage") && ev[0]["usage"].is_null());
  std::string content;
  Json finish;
  for (size_t i = 1; i + 2 < ev.size(); ++i) {
    const Json& ch = ev[i]["choices"][0];
    EXPECT_EQ(ev[i]["id"], ev[0]["id"]);
    if (ch["delta"].contains("content")) content += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finish = ch;
  }
  EXPECT_EQ(content, "Hello world");
  EXPECT_EQ(finish["finish_reason"], "stop");
  EXPECT_EQ(finish["matched_stop"], 1);  // EOS id
  const Json& usage_chunk = ev[ev.size() - 2];
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 4);  // three pieces + EOS
}

TEST(ServerChat, ReasoningSeparatedAndCounted) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) {
    return pieces({"Let me", " think", "</think>", "Answer"});
  });
  Json body = user_chat("q", {{"chat_template_kwargs", {{"thinking", true}}}});
  auto r = h.post("/v1/chat/completions", body);
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = body_json(*r);
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "Let me think");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Answer");
  EXPECT_EQ(j["usage"]["completion_tokens_details"]["reasoning_tokens"], 3);  // two pieces + </think>
  EXPECT_EQ(j["usage"]["reasoning_tokens"], 3);

  // separate_reasoning: false keeps it all in content.
  body["separate_reasoning"] = false;
  j = body_json(*h.post("/v1/chat/completions", body));
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Let me think</think>Answer");
  EXPECT_TRUE(j["choices"][0]["message"]["reasoning_content"].is_null());

  // Streaming: reasoning_content deltas, then content.
  body["separate_reasoning"] = true;
  body["stream"] = true;
  auto s = h.post("/v1/chat/completions", body);
  std::string reasoning, content;
  for (const auto& e : sse_events(s->body)) {
    if (!e.is_object() || e["choices"].empty()) continue;
    const Json& d = e["choices"][0]["delta"];
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("content")) content += d["content"].get<std::string>();
  }
  EXPECT_EQ(reasoning, "Let me think");
  EXPECT_EQ(content, "Answer");
}

const char* kToolCall =
    "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls>";

Json weather_tools() {
  return Json::array(
      {Json{{"type", "function"},
            {"function",
             {{"name", "get_weather"},
              {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
}

TEST(ServerChat, ToolCallsParsedAndFinishReason) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) {
    std::string t = kToolCall;
    FakeScript s{{"Checking."}, true};
    for (size_t i = 0; i < t.size(); i += 7) s.pieces.push_back(t.substr(i, 7));  // split anywhere
    return s;
  });
  Json body = user_chat("weather in Paris?", {{"tools", weather_tools()}});
  Json j = body_json(*h.post("/v1/chat/completions", body));
  const Json& c = j["choices"][0];
  EXPECT_EQ(c["finish_reason"], "tool_calls");
  EXPECT_EQ(c["message"]["content"], "Checking.");
  ASSERT_EQ(c["message"]["tool_calls"].size(), 1u);
  const Json& call = c["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(Json::parse(call["function"]["arguments"].get<std::string>()), Json({{"city", "Paris"}}));
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  // The tools reached the prompt.
  std::string prompt = h.tok.decode(h.engine.submitted()[0].prompt, false);
  EXPECT_NE(prompt.find("get_weather"), std::string::npos);

  // Streaming: a tool_calls delta with id + name, then argument pieces, finish tool_calls.
  body["stream"] = true;
  auto s = h.post("/v1/chat/completions", body);
  std::string name, args, finish;
  for (const auto& e : sse_events(s->body)) {
    if (!e.is_object() || e["choices"].empty()) continue;
    const Json& ch = e["choices"][0];
    if (ch["delta"].contains("tool_calls")) {
      for (const auto& tc : ch["delta"]["tool_calls"]) {
        EXPECT_EQ(tc["index"], 0);
        if (tc["function"].contains("name")) name += tc["function"]["name"].get<std::string>();
        args += tc["function"]["arguments"].get<std::string>();
      }
    }
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(Json::parse(args), Json({{"city", "Paris"}}));
  EXPECT_EQ(finish, "tool_calls");

  // tool_choice none: the text stays content.
  body["stream"] = false;
  body["tool_choice"] = "none";
  j = body_json(*h.post("/v1/chat/completions", body));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_NE(j["choices"][0]["message"]["content"].get<std::string>().find("DSML"), std::string::npos);
}

TEST(ServerChat, ToolChoiceNamedNarrowsToolsAndIsValidated) {
  Harness h;
  Json tools = weather_tools();
  tools.push_back(Json{{"type", "function"}, {"function", {{"name", "get_time"}}}});
  Json body = user_chat("hi", {{"tools", tools},
                               {"max_tokens", 2},
                               {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}}});
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  std::string prompt = h.tok.decode(h.engine.submitted()[0].prompt, false);
  EXPECT_NE(prompt.find("get_time"), std::string::npos);
  EXPECT_EQ(prompt.find("get_weather"), std::string::npos);
  // Enforced by a grammar over the whole call block (deepseekv32): a call to get_time at once (no
  // thinking: the prompt closed it), its arguments under its schema (none given: free).
  const auto sub = h.engine.submitted()[0];
  EXPECT_TRUE(sub.forced.empty());
  ASSERT_FALSE(sub.grammar.empty());
  EXPECT_TRUE(sub.grammar.trigger.empty());
  auto call = [](const std::string& name, const std::string& params) {
    return "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"" + name + "\">\n" + params +
           "\n</｜DSML｜invoke>\n</｜DSML｜function_calls>";
  };
  const std::string city = "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>";
  const std::string get_time = "<｜DSML｜parameter name=\"tz\" string=\"true\">UTC</｜DSML｜parameter>";
  EXPECT_TRUE(grammar::grammar_matches(sub.grammar.grammar, call("get_time", get_time)));
  EXPECT_TRUE(grammar::grammar_matches(sub.grammar.grammar, call("get_time", "")));
  EXPECT_FALSE(grammar::grammar_matches(sub.grammar.grammar, call("get_weather", city)));

  // required: a call to any of the tools, after the reasoning when thinking; get_weather's
  // arguments follow its schema (only "city", a string).
  body["tool_choice"] = "required";
  body["tools"] = tools;
  body["chat_template_kwargs"] = {{"thinking", true}};
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  const auto req2 = h.engine.submitted().back();
  EXPECT_EQ(h.tok.decode(req2.grammar.trigger, false), "</think>");
  EXPECT_TRUE(grammar::grammar_matches(req2.grammar.grammar, call("get_weather", city)));
  EXPECT_TRUE(grammar::grammar_matches(req2.grammar.grammar, call("get_time", "")));
  EXPECT_FALSE(grammar::grammar_matches(
      req2.grammar.grammar, call("get_weather", "<｜DSML｜parameter name=\"town\" string=\"true\">Paris</｜DSML｜parameter>")));
  // Parallel calls unless parallel_tool_calls is false.
  const std::string two = "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_time\">\n\n</｜DSML｜invoke>\n"
                          "<｜DSML｜invoke name=\"get_weather\">\n" + city + "\n</｜DSML｜invoke>\n</｜DSML｜function_calls>";
  EXPECT_TRUE(grammar::grammar_matches(req2.grammar.grammar, two));
  body["parallel_tool_calls"] = false;
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  EXPECT_FALSE(grammar::grammar_matches(h.engine.submitted().back().grammar.grammar, two));
  body.erase("parallel_tool_calls");
  // A strict tool whose schema the engine cannot hold is a 400 naming the keyword; not strict, its
  // arguments are left free.
  Json odd = tools;
  odd[0]["function"]["parameters"]["properties"]["city"]["not"] = {{"const", "x"}};
  body["tools"] = odd;
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  odd[0]["function"]["strict"] = true;
  body["tools"] = odd;
  auto strict = h.post("/v1/chat/completions", body);
  EXPECT_EQ(strict->status, 400);
  EXPECT_EQ(body_json(*strict)["error"]["param"], "tools");
  EXPECT_NE(body_json(*strict)["error"]["message"].get<std::string>().find("'not'"), std::string::npos) << strict->body;
  body["tools"] = tools;
  // auto: nothing forced.
  body["tool_choice"] = "auto";
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  EXPECT_TRUE(h.engine.submitted().back().forced.empty());
  EXPECT_TRUE(h.engine.submitted().back().grammar.empty());
  // auto with a strict tool: free content (after the reasoning), and a call block, if the model
  // opens one, under the schemas; no other block opener in the content.
  Json strict_tools = tools;
  strict_tools[0]["function"]["strict"] = true;
  body["tools"] = strict_tools;
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  const auto req3 = h.engine.submitted().back();
  ASSERT_FALSE(req3.grammar.empty());
  EXPECT_EQ(h.tok.decode(req3.grammar.trigger, false), "</think>");
  EXPECT_TRUE(grammar::grammar_matches(req3.grammar.grammar, "It is sunny, no tool needed."));
  EXPECT_TRUE(grammar::grammar_matches(req3.grammar.grammar, "Let me look." + call("get_weather", city)));
  EXPECT_TRUE(grammar::grammar_matches(req3.grammar.grammar, call("get_time", "")));
  EXPECT_FALSE(grammar::grammar_matches(
      req3.grammar.grammar, call("get_weather", "<｜DSML｜parameter name=\"town\" string=\"true\">Paris</｜DSML｜parameter>")));
  EXPECT_FALSE(grammar::grammar_matches(req3.grammar.grammar, "x<function_calls>y"));
  // A response_format of the request keeps the whole answer (no call can be written then).
  body["response_format"] = {{"type", "json_object"}};
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  EXPECT_TRUE(grammar::grammar_matches(h.engine.submitted().back().grammar.grammar, "{\"a\": 1}"));
  body.erase("response_format");
  body["tools"] = tools;
  body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_time"}}}};

  body["tool_choice"]["function"]["name"] = "nope";
  auto r = h.post("/v1/chat/completions", body);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_json(*r)["error"]["param"], "tool_choice");
  auto req = user_chat("hi", {{"tool_choice", "required"}});
  EXPECT_EQ(h.post("/v1/chat/completions", req)->status, 400);
  req["tool_choice"] = "sometimes";
  EXPECT_EQ(h.post("/v1/chat/completions", req)->status, 400);

  // Without a tool-call parser the call could not be parsed: forcing one is refused.
  ServerConfig cfg = test_config();
  cfg.tool_call_parser.clear();
  Harness plain(cfg);
  body["tool_choice"] = "required";
  auto no_parser = plain.post("/v1/chat/completions", body);
  EXPECT_EQ(no_parser->status, 400);
  EXPECT_NE(body_json(*no_parser)["error"]["message"].get<std::string>().find("--tool-call-parser"), std::string::npos);
}

TEST(ServerChat, ToolResultsReachThePrompt) {
  Harness h;
  Json msgs = Json::array(
      {Json{{"role", "user"}, {"content", "weather?"}},
       Json{{"role", "assistant"},
            {"content", ""},
            {"tool_calls",
             Json::array({Json{{"id", "call_1"},
                               {"type", "function"},
                               {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\"}"}}}}})}},
       Json{{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "sunny, 21C"}}});
  Json body = {{"messages", msgs}, {"tools", weather_tools()}, {"max_tokens", 1}};
  ASSERT_EQ(h.post("/v1/chat/completions", body)->status, 200);
  std::string prompt = h.tok.decode(h.engine.submitted()[0].prompt, false);
  EXPECT_NE(prompt.find("sunny, 21C"), std::string::npos);
}

TEST(ServerChat, StopStringsEndTheOutputAndAreNotSent) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) { return pieces({"Hello", " wor", "ld ST", "OP", "more"}); });
  Json j = body_json(*h.post("/v1/chat/completions", user_chat("x", {{"stop", "STOP"}})));
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello world ");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][0]["matched_stop"], "STOP");
  EXPECT_EQ(h.engine.submitted()[0].stop, std::vector<std::string>{"STOP"});
  h.post("/v1/chat/completions", user_chat("x", {{"stop", {"a", "b"}}, {"stop_token_ids", {7, 8}}}));
  EXPECT_EQ(h.engine.submitted()[1].stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(h.engine.submitted()[1].stop_token_ids, (std::vector<int32_t>{7, 8}));
}

TEST(ServerChat, NChoicesGetDistinctSeedsAndOnePromptInUsage) {
  Harness h;
  Json j = body_json(
      *h.post("/v1/chat/completions",
              user_chat("some prompt text", {{"n", 3}, {"seed", 42}, {"max_tokens", 4}, {"temperature", 0.7}})));
  ASSERT_EQ(j["choices"].size(), 3u);
  auto sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(sub[i].sampling.seed, 42u + i);
    EXPECT_EQ(sub[i].id, j["id"].get<std::string>() + "-" + std::to_string(i));
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], sub[0].prompt.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  // Same seed, same text (the fake draws its offset from the seed).
  Json again = body_json(
      *h.post("/v1/chat/completions",
              user_chat("some prompt text", {{"n", 3}, {"seed", 42}, {"max_tokens", 4}, {"temperature", 0.7}})));
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(again["choices"][i]["message"]["content"], j["choices"][i]["message"]["content"]);
}

TEST(ServerChat, LogprobsShape) {
  Harness h;
  Json j = body_json(
      *h.post("/v1/chat/completions", user_chat("abc", {{"logprobs", true}, {"top_logprobs", 2}, {"max_tokens", 3}})));
  const Json& content = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 3u);
  for (const auto& t : content) {
    EXPECT_TRUE(t["token"].is_string());
    EXPECT_TRUE(t["bytes"].is_array());
    EXPECT_FLOAT_EQ(t["logprob"].get<float>(), -0.25f);
    ASSERT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_TRUE(t["top_logprobs"][1].contains("bytes"));
  }
  EXPECT_TRUE(h.engine.submitted()[0].sampling.logprobs);
  EXPECT_EQ(h.engine.submitted()[0].sampling.top_logprobs, 2);
  // Streaming carries them per chunk.
  auto s = h.post("/v1/chat/completions", user_chat("abc", {{"logprobs", true}, {"max_tokens", 3}, {"stream", true}}));
  size_t n = 0;
  for (const auto& e : sse_events(s->body))
    if (e.is_object() && !e["choices"].empty() && !e["choices"][0]["logprobs"].is_null())
      n += e["choices"][0]["logprobs"]["content"].size();
  EXPECT_EQ(n, 3u);
  // top_logprobs without logprobs is refused.
  EXPECT_EQ(h.post("/v1/chat/completions", user_chat("abc", {{"top_logprobs", 2}}))->status, 400);
}

TEST(ServerChat, DisconnectAbortsTheRequestAndFreesItsPages) {
  Harness h;
  h.engine.pause(true);
  auto r = h.start("POST", "/v1/chat/completions", dump(user_chat("hello", {{"stream", true}, {"max_tokens", 100}})));
  for (int i = 0; i < 200 && h.engine.stats().running == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(h.engine.stats().running, 1);
  EXPECT_GT(h.engine.stats().used_pages, 0);
  r->disconnect();
  for (int i = 0; i < 200 && h.engine.stats().running > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(h.engine.stats().running, 0);
  EXPECT_EQ(h.engine.stats().used_pages, 0);
  ASSERT_EQ(h.engine.aborted().size(), 1u);
  EXPECT_EQ(h.engine.aborted()[0], h.engine.submitted()[0].id);
  // The final (abort) output reaches the job after the engine let go: then the rid is released.
  for (int i = 0; i < 200 && h.api.state().live.size() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(h.api.state().live.size(), 0u);
}

TEST(ServerChat, AbortRequestEndsWithFinishReasonAbort) {
  Harness h;
  h.engine.pause(true);
  auto r = h.start("POST", "/v1/chat/completions", dump(user_chat("hello", {{"max_tokens", 100}})));
  for (int i = 0; i < 200 && h.engine.stats().running == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string id = h.engine.submitted()[0].id;
  EXPECT_EQ(h.post("/abort_request", Json{{"rid", id}})->status, 200);
  ASSERT_TRUE(r->wait());
  EXPECT_EQ(body_json(*r)["choices"][0]["finish_reason"], "abort");
}

TEST(ServerChat, BadRequestsNameTheField) {
  Harness h;
  struct Case {
    Json body;
    int status;
    const char* param;
  };
  std::vector<Case> cases = {
      {Json{{"model", "test-model"}}, 400, "messages"},
      {Json{{"messages", Json::array()}}, 400, "messages"},
      {Json{{"messages", "hi"}}, 400, "messages"},
      {Json{{"messages", Json::array({Json{{"role", "wizard"}, {"content", "x"}}})}}, 400, "messages"},
      {user_chat("x", {{"temperature", -1}}), 400, "temperature"},
      {user_chat("x", {{"temperature", "hot"}}), 400, "temperature"},
      {user_chat("x", {{"top_p", 0}}), 400, "top_p"},
      {user_chat("x", {{"top_k", 0}}), 400, "top_k"},
      {user_chat("x", {{"presence_penalty", 5}}), 400, "presence_penalty"},
      {user_chat("x", {{"n", 0}}), 400, "n"},
      {user_chat("x", {{"n", 100000}}), 400, "n"},
      {user_chat("x", {{"max_tokens", 0}}), 400, "max_tokens"},
      {user_chat("x", {{"max_tokens", -5}}), 400, "max_tokens"},
      {user_chat("x", {{"max_completion_tokens", 1.5}}), 400, "max_completion_tokens"},
      {user_chat("x", {{"max_tokens", 100000}}), 400, "messages"},  // over the context length
      {user_chat("x", {{"stop", 3}}), 400, "stop"},
      {user_chat("x", {{"stop", {""}}}), 400, "stop"},
      {user_chat("x", {{"seed", "s"}}), 400, "seed"},
      {user_chat("x", {{"stream", "yes"}}), 400, "stream"},
      {user_chat("x", {{"logit_bias", {{"5", 1}}}}), 400, "logit_bias"},
      {user_chat("x", {{"response_format", {{"type", "json_schema"}}}}), 400, "response_format"},
      {user_chat("x", {{"model", "gpt-4"}}), 404, "model"},
      {user_chat("x", {{"model", 7}}), 400, "model"},
  };
  for (const auto& c : cases) {
    auto r = h.post("/v1/chat/completions", c.body);
    ASSERT_EQ(r->status, c.status) << dump(c.body) << " -> " << r->body;
    Json e = body_json(*r);
    ASSERT_TRUE(e.contains("error")) << r->body;
    EXPECT_EQ(e["error"]["param"], c.param) << dump(c.body) << " -> " << r->body;
    EXPECT_TRUE(e["error"]["message"].is_string());
    EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  }
  EXPECT_EQ(body_json(*h.post("/v1/chat/completions", user_chat("x", {{"model", "gpt-4"}})))["error"]["code"],
            "model_not_found");
  auto bad = h.start("POST", "/v1/chat/completions", "{not json");
  ASSERT_TRUE(bad->wait());
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(body_json(*bad)["error"]["message"].get<std::string>().find("Invalid JSON"), std::string::npos);
  EXPECT_TRUE(h.engine.submitted().empty());
}

TEST(ServerChat, PromptLongerThanTheContextIs400) {
  ServerConfig small = test_config();
  small.context_length = 8;
  Harness tiny(small, engine_config(8));
  auto r = tiny.post("/v1/chat/completions", user_chat("a rather long prompt that does not fit in eight tokens"));
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(body_json(*r)["error"]["message"].get<std::string>().find("context length"), std::string::npos);
}

TEST(ServerChat, QueueFullIs503WithRetryAfter) {
  auto ecfg = engine_config();
  ecfg.max_queued_requests = 0;
  Harness h(test_config(), ecfg);
  auto r = h.post("/v1/chat/completions", user_chat("x"));
  EXPECT_EQ(r->status, 503);
  bool retry = false;
  for (const auto& [k, v] : r->headers) retry = retry || k == "Retry-After";
  EXPECT_TRUE(retry);
  EXPECT_EQ(body_json(*r)["error"]["type"], "server_error");
  EXPECT_EQ(h.api.state().live.size(), 0u);
}

}  // namespace
}  // namespace ds::server::testing
