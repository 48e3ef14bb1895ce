// Request payloads and response parsing per backend, fed recorded lines with recorded timestamps.
#include <gtest/gtest.h>

#include "bench/protocol.h"
#include "util/error.h"

using namespace ds::bench;
using nlohmann::json;

TEST(BenchProtocol, Backends) {
  EXPECT_EQ(backend_spec("sglang").path, "/generate");
  EXPECT_EQ(backend_spec("sglang-oai").path, "/v1/completions");
  EXPECT_EQ(backend_spec("vllm").path, "/v1/completions");
  EXPECT_EQ(backend_spec("openai").path, "/v1/completions");
  EXPECT_EQ(backend_spec("sglang-oai-chat").path, "/v1/chat/completions");
  EXPECT_EQ(backend_spec("openai-chat").path, "/v1/chat/completions");
  EXPECT_THROW(backend_spec("trt"), ds::Error);
}

TEST(BenchProtocol, Payloads) {
  DatasetRow row{"hello", 1, 7};
  RequestOptions opt;
  opt.extra_body = {{"temperature", 0.6}, {"top_k", 5}};
  json g = json::parse(build_payload(Api::kGenerate, "m", row, 7, opt));
  EXPECT_EQ(g["text"], "hello");
  EXPECT_EQ(g["sampling_params"]["max_new_tokens"], 7);
  EXPECT_EQ(g["sampling_params"]["ignore_eos"], true);
  EXPECT_EQ(g["stream"], true);
  EXPECT_EQ(g["logprob_start_len"], -1);
  EXPECT_EQ(g["top_k"], 5);  // extra body merges at the top level
  opt.stream = false;
  opt.ignore_eos = false;
  json c = json::parse(build_payload(Api::kCompletions, "m", row, 7, opt));
  EXPECT_EQ(c["prompt"], "hello");
  EXPECT_EQ(c["max_tokens"], 7);
  EXPECT_EQ(c["best_of"], 1);
  EXPECT_EQ(c["temperature"], 0.6);  // extra body overrides
  EXPECT_EQ(c["ignore_eos"], false);
  EXPECT_EQ(c["stream"], false);
  json ch = json::parse(build_payload(Api::kChatCompletions, "m", row, 7, opt));
  EXPECT_EQ(ch["messages"][0]["content"], "hello");
  EXPECT_EQ(ch["max_completion_tokens"], 7);
  EXPECT_EQ(ch["model"], "m");
}

TEST(BenchProtocol, GenerateStreamSpreadsGapOverNewTokens) {
  ResponseReader r(Api::kGenerate, true, 16, 10.0);
  r.on_line(R"(data: {"text":"a","meta_info":{"completion_tokens":1,"prompt_tokens":9}})", 10.5);
  r.on_line("", 10.55);
  r.on_line(R"(data: {"text":"a b c","meta_info":{"completion_tokens":3}})", 10.7);
  r.on_line(R"(data: {"text":"a b c","meta_info":{"completion_tokens":3}})", 10.8);  // no new token: skipped
  r.on_line("data: [DONE]", 10.9);
  RequestOutput o;
  r.finish(o, 10.95);
  EXPECT_TRUE(o.success);
  EXPECT_EQ(o.generated_text, "a b c");
  EXPECT_EQ(o.output_len, 3);
  EXPECT_EQ(o.server_prompt_tokens, 9);
  EXPECT_NEAR(o.ttft, 0.5, 1e-12);
  ASSERT_EQ(o.itl.size(), 2u);
  EXPECT_NEAR(o.itl[0], 0.1, 1e-12);
  EXPECT_NEAR(o.itl[1], 0.1, 1e-12);
  EXPECT_NEAR(o.latency, 0.9, 1e-12);  // the last non-empty line, [DONE] included
  EXPECT_DOUBLE_EQ(o.start_time, 10.0);
}

TEST(BenchProtocol, CompletionsStream) {
  ResponseReader r(Api::kCompletions, true, 4, 0.0);
  r.on_line(R"(data: {"choices":[{"text":"x"}]})", 0.2);
  r.on_line(R"(data: {"choices":[{"text":"y"}]})", 0.3);
  r.on_line(R"(data: {"choices":[{"text":"z"}],"usage":{"completion_tokens":3,"prompt_tokens":2}})", 0.6);
  r.on_line(R"(data: {"choices":[{"text":""}],"usage":{"completion_tokens":99}})", 0.7);  // empty text: ignored
  r.on_line("data: [DONE]", 0.8);
  RequestOutput o;
  r.finish(o, 0.8);
  EXPECT_EQ(o.generated_text, "xyz");
  EXPECT_EQ(o.output_len, 3);
  EXPECT_NEAR(o.ttft, 0.2, 1e-12);
  ASSERT_EQ(o.itl.size(), 2u);
  EXPECT_NEAR(o.itl[0], 0.1, 1e-12);
  EXPECT_NEAR(o.itl[1], 0.3, 1e-12);
  EXPECT_EQ(o.text_chunks, (std::vector<std::string>{"y", "z"}));
  EXPECT_NEAR(o.latency, 0.8, 1e-12);
}

TEST(BenchProtocol, ChatStreamSkipsEmptyDeltas) {
  ResponseReader r(Api::kChatCompletions, true, 5, 1.0);
  r.on_line(R"(data: {"choices":[{"delta":{"role":"assistant","content":""}}]})", 1.1);
  r.on_line(R"(data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]})", 1.2);
  r.on_line(R"(data: {"choices":[{"delta":{"content":"Hi"}}]})", 1.5);
  r.on_line(R"(data: {"choices":[{"delta":{"content":" there"}}]})", 1.75);
  r.on_line(R"(data: {"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"completion_tokens":2}})", 1.8);
  r.on_line("data: [DONE]", 1.9);
  RequestOutput o;
  r.finish(o, 1.9);
  EXPECT_EQ(o.generated_text, "Hi there");
  EXPECT_NEAR(o.ttft, 0.5, 1e-12);
  ASSERT_EQ(o.itl.size(), 1u);
  EXPECT_NEAR(o.itl[0], 0.25, 1e-12);
  EXPECT_EQ(o.output_len, 2);
  EXPECT_NEAR(o.latency, 0.9, 1e-12);
}

TEST(BenchProtocol, NonStreamingTtftIsLatency) {
  for (Api api : {Api::kGenerate, Api::kCompletions, Api::kChatCompletions}) {
    ResponseReader r(api, false, 8, 2.0);
    const char* body = api == Api::kGenerate ? R"({"text":"abc","meta_info":{"completion_tokens":3,"prompt_tokens":4}})"
                       : api == Api::kCompletions ? R"({"choices":[{"text":"abc"}],"usage":{"completion_tokens":3}})"
                                                  : R"({"choices":[{"message":{"content":"abc"}}],"usage":{"completion_tokens":3}})";
    r.on_line(body, 2.4);
    RequestOutput o;
    r.finish(o, 2.5);
    EXPECT_EQ(o.generated_text, "abc");
    EXPECT_EQ(o.output_len, 3);
    EXPECT_NEAR(o.latency, 0.5, 1e-12);
    EXPECT_NEAR(o.ttft, 0.5, 1e-12);
    EXPECT_TRUE(o.itl.empty());
  }
}

TEST(BenchProtocol, MalformedJsonThrows) {
  ResponseReader r(Api::kCompletions, true, 4, 0.0);
  EXPECT_ANY_THROW(r.on_line("data: {not json", 0.1));
}
