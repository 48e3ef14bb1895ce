// /v1/completions and SGLang's native /generate over the fake engine.
#include <gtest/gtest.h>

#include <thread>

#include "server_test_util.h"

namespace ds::server::testing {
namespace {

TEST(ServerCompletions, StringPromptShapeUsageAndDefaultMaxTokens) {
  Harness h;
  Json j = body_json(*h.post("/v1/completions", Json{{"model", "test-model"}, {"prompt", "hello world"}}));
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "test-model");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_TRUE(j["choices"][0]["text"].is_string());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  auto sub = h.engine.submitted();
  EXPECT_EQ(sub[0].max_new_tokens, 16);  // OpenAI's default
  EXPECT_EQ(sub[0].prompt, h.tok.encode("hello world", h.tok.add_bos_token()));
  EXPECT_EQ(j["usage"]["prompt_tokens"], sub[0].prompt.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], 16);
}

TEST(ServerCompletions, TokenPromptsBatchAndNNumberChoices) {
  Harness h;
  Json j = body_json(
      *h.post("/v1/completions",
              Json{{"prompt", Json::array({Json::array({5, 6, 7}), "text two"})}, {"n", 2}, {"max_tokens", 3}}));
  ASSERT_EQ(j["choices"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(j["choices"][i]["index"], i);
  auto sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 4u);
  EXPECT_EQ(sub[0].prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(sub[1].prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3 + sub[2].prompt.size());  // each prompt once
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
}

TEST(ServerCompletions, StreamingEchoLogprobsAndUsage) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) { return FakeScript{{"a", "bc", "d"}, false}; });
  auto r = h.post("/v1/completions", Json{{"prompt", "P"},
                                          {"max_tokens", 3},
                                          {"stream", true},
                                          {"echo", true},
                                          {"stream_options", {{"include_usage", true}}}});
  auto ev = sse_events(r->body);
  std::string text;
  for (const auto& e : ev)
    if (e.is_object() && !e["choices"].empty()) text += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, "Pabcd");
  EXPECT_EQ(ev.back(), "[DONE]");
  EXPECT_EQ(ev[ev.size() - 2]["usage"]["completion_tokens"], 3);
  EXPECT_EQ(ev[ev.size() - 3]["choices"][0]["finish_reason"], "length");

  Json j = body_json(*h.post("/v1/completions", Json{{"prompt", "P"}, {"max_tokens", 3}, {"logprobs", 2}}));
  const Json& lp = j["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 3u);
  ASSERT_EQ(lp["token_logprobs"].size(), 3u);
  ASSERT_EQ(lp["top_logprobs"].size(), 3u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  ASSERT_EQ(lp["text_offset"].size(), 3u);
  EXPECT_EQ(lp["text_offset"][0], 0);
  EXPECT_EQ(lp["text_offset"][1], lp["tokens"][0].get<std::string>().size());
  EXPECT_EQ(h.post("/v1/completions", Json{{"prompt", "P"}, {"echo", true}, {"logprobs", 1}})->status, 400);
}

TEST(ServerCompletions, BadPrompts) {
  Harness h;
  for (Json body : {Json{{"max_tokens", 3}}, Json{{"prompt", 5}}, Json{{"prompt", Json::array()}},
                    Json{{"prompt", Json::array({1, -2})}}, Json{{"prompt", Json::array({1, 999999})}},
                    Json{{"prompt", Json::array({Json::array({1}), 3})}}}) {
    auto r = h.post("/v1/completions", body);
    EXPECT_EQ(r->status, 400) << dump(body);
    EXPECT_EQ(body_json(*r)["error"]["param"].get<std::string>().rfind("prompt", 0), 0u) << r->body;
  }
  EXPECT_EQ(h.post("/v1/completions", Json{{"prompt", "x"}, {"best_of", 3}})->status, 400);
  EXPECT_EQ(h.post("/v1/completions", Json{{"prompt", "x"}, {"suffix", "y"}})->status, 400);
  EXPECT_TRUE(h.engine.submitted().empty());
}

TEST(ServerGenerate, TextResponseMetaInfo) {
  Harness h;
  Json j = body_json(*h.post(
      "/generate", Json{{"text", "hello world"}, {"sampling_params", {{"max_new_tokens", 4}, {"temperature", 0}}}}));
  EXPECT_TRUE(j["text"].is_string());
  EXPECT_EQ(j["output_ids"].size(), 4u);
  const Json& m = j["meta_info"];
  EXPECT_EQ(m["finish_reason"], Json({{"type", "length"}, {"length", 4}}));
  EXPECT_EQ(m["prompt_tokens"], h.engine.submitted()[0].prompt.size());
  EXPECT_EQ(m["completion_tokens"], 4);
  EXPECT_EQ(m["cached_tokens"], 0);
  EXPECT_TRUE(m["e2e_latency"].is_number());
  EXPECT_EQ(m["id"], h.engine.submitted()[0].id);
  // SGLang's default max_new_tokens is 128.
  h.post("/generate", Json{{"text", "x"}});
  EXPECT_EQ(h.engine.submitted()[1].max_new_tokens, 128);
}

TEST(ServerGenerate, StreamsCumulativeTextAndStopMatch) {
  Harness h;
  h.engine.set_script([](const runtime::GenerateRequest&) { return FakeScript{{"a", "b", "c"}, true}; });
  auto r =
      h.post("/generate", Json{{"input_ids", {3, 4}}, {"stream", true}, {"sampling_params", {{"max_new_tokens", 10}}}});
  auto ev = sse_events(r->body);
  ASSERT_EQ(ev.back(), "[DONE]");
  std::vector<std::string> texts;
  for (const auto& e : ev)
    if (e.is_object()) texts.push_back(e["text"]);
  ASSERT_GE(texts.size(), 3u);
  EXPECT_EQ(texts[0], "a");
  EXPECT_EQ(texts[1], "ab");
  EXPECT_EQ(texts.back(), "abc");
  const Json& last = ev[ev.size() - 2]["meta_info"]["finish_reason"];
  EXPECT_EQ(last, Json({{"type", "stop"}, {"matched", 1}}));
  EXPECT_EQ(h.engine.submitted()[0].prompt, (std::vector<int32_t>{3, 4}));
}

TEST(ServerGenerate, BatchesRidsAndLogprobs) {
  Harness h;
  Json j = body_json(*h.post("/generate", Json{{"text", {"a", "b"}},
                                               {"rid", {"r-a", "r-b"}},
                                               {"sampling_params", {{"max_new_tokens", 2}}},
                                               {"return_logprob", true},
                                               {"top_logprobs_num", 2}}));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["meta_info"]["id"], "r-a");
  EXPECT_EQ(j[1]["meta_info"]["id"], "r-b");
  EXPECT_EQ(j[1]["index"], 1);
  const Json& lp = j[0]["meta_info"]["output_token_logprobs"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[0].size(), 3u);  // [logprob, id, text]
  EXPECT_EQ(j[0]["meta_info"]["output_top_logprobs"][0].size(), 2u);
}

TEST(ServerGenerate, LiveRidIsUniqueAndAbortable) {
  Harness h;
  h.engine.pause(true);
  auto first = h.start("POST", "/generate", dump(Json{{"text", "x"}, {"rid", "same"}}));
  auto second = h.post("/generate", Json{{"text", "y"}, {"rid", "same"}});
  EXPECT_EQ(second->status, 400);
  EXPECT_EQ(body_json(*second)["error"]["param"], "rid");
  EXPECT_EQ(h.post("/abort_request", Json{{"rid", "same"}})->status, 200);
  ASSERT_TRUE(first->wait());
  EXPECT_EQ(body_json(*first)["meta_info"]["finish_reason"]["type"], "abort");
  // Once finished, the rid can be used again.
  h.engine.pause(false);
  EXPECT_EQ(
      h.post("/generate", Json{{"text", "y"}, {"rid", "same"}, {"sampling_params", {{"max_new_tokens", 1}}}})->status,
      200);
}

TEST(ServerGenerate, BadInput) {
  Harness h;
  for (Json body :
       {Json::object(), Json{{"text", "a"}, {"input_ids", {1}}}, Json{{"text", 3}}, Json{{"input_ids", Json::array()}},
        Json{{"text", "a"}, {"sampling_params", {{"warp", 2}}}},
        Json{{"text", "a"}, {"sampling_params", {{"temperature", -2}}}},
        Json{{"text", "a"}, {"sampling_params", {{"regex", "a++"}}}}, Json{{"text", "a"}, {"sampling_params", 5}}}) {
    auto r = h.post("/generate", body);
    EXPECT_EQ(r->status, 400) << dump(body) << " -> " << r->body;
  }
  auto r = h.post("/generate", Json{{"text", "a"}, {"sampling_params", {{"temperature", -2}}}});
  EXPECT_EQ(body_json(*r)["error"]["param"], "sampling_params.temperature");
  EXPECT_TRUE(h.engine.submitted().empty());
}

}  // namespace
}  // namespace ds::server::testing
