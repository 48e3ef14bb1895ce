// The small endpoints, routing, the API key, metrics text, parameter parsing and defaults.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "server/api_error.h"
#include "server/generation_params.h"
#include "server/metrics.h"
#include "server_test_util.h"

namespace ds::server::testing {
namespace {

TEST(ServerEndpoints, ModelsInfoHealth) {
  Harness h;
  Json m = body_json(*h.get("/v1/models"));
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "test-model");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(m["data"][0]["max_model_len"], 4096);
  EXPECT_EQ(body_json(*h.get("/v1/models/test-model"))["id"], "test-model");
  EXPECT_EQ(h.get("/v1/models/other")->status, 404);

  Json info = body_json(*h.get("/get_model_info"));
  EXPECT_EQ(info["model_path"], "/models/test");
  EXPECT_EQ(info["is_generation"], true);
  Json si = body_json(*h.get("/get_server_info"));
  ASSERT_TRUE(si["internal_states"].is_array());
  EXPECT_EQ(si["internal_states"][0]["used_pages"], 0);
  EXPECT_EQ(si["internal_states"][0]["num_pages"], 256);
  EXPECT_TRUE(si.contains("version"));

  EXPECT_EQ(h.get("/health")->status, 200);
  EXPECT_EQ(h.get("/health_generate")->status, 200);
  EXPECT_EQ(h.engine.submitted().back().max_new_tokens, 1);
}

TEST(ServerEndpoints, RoutingErrors) {
  Harness h;
  auto r = h.get("/nope");
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(body_json(*r)["error"]["message"].is_string());
  r = h.get("/v1/chat/completions");
  EXPECT_EQ(r->status, 405);
  bool allow = false;
  for (const auto& [k, v] : r->headers) allow = allow || (k == "Allow" && v == "POST");
  EXPECT_TRUE(allow);
}

TEST(ServerEndpoints, ApiKey) {
  ServerConfig cfg = test_config();
  cfg.api_key = "sk-secret";
  Harness h(cfg);
  auto r = h.get("/v1/models");
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(body_json(*r)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(h.call("GET", "/v1/models", nullptr, {{"authorization", "Bearer sk-wrong"}})->status, 401);
  EXPECT_EQ(h.call("GET", "/v1/models", nullptr, {{"authorization", "Bearer sk-secre"}})->status, 401);
  EXPECT_EQ(h.call("GET", "/v1/models", nullptr, {{"authorization", "sk-secret"}})->status, 401);
  EXPECT_EQ(h.call("GET", "/v1/models", nullptr, {{"authorization", "Bearer sk-secret"}})->status, 200);
  EXPECT_EQ(h.call("POST", "/v1/chat/completions", user_chat("x", {{"max_tokens", 1}}))->status, 401);
  EXPECT_TRUE(h.engine.submitted().empty());
  EXPECT_EQ(h.get("/health")->status, 200);  // open, as in SGLang
  EXPECT_EQ(h.get("/metrics")->status, 200);
}

TEST(ServerEndpoints, TokenizeDetokenize) {
  Harness h;
  Json t = body_json(*h.post("/v1/tokenize", Json{{"prompt", "hello world"}}));
  auto ids = h.tok.encode("hello world", h.tok.add_bos_token());
  EXPECT_EQ(t["tokens"], ids);
  EXPECT_EQ(t["count"], ids.size());
  EXPECT_EQ(t["max_model_len"], 4096);
  Json nospecial = body_json(*h.post("/v1/tokenize", Json{{"prompt", "hello world"}, {"add_special_tokens", false}}));
  EXPECT_EQ(nospecial["tokens"], h.tok.encode("hello world", false));
  Json d = body_json(*h.post("/v1/detokenize", Json{{"tokens", nospecial["tokens"]}}));
  EXPECT_EQ(d["text"], "hello world");
  Json batch = body_json(*h.post("/v1/tokenize", Json{{"prompt", {"a", "b c"}}}));
  EXPECT_EQ(batch["count"].size(), 2u);
  EXPECT_EQ(h.post("/v1/detokenize", Json{{"tokens", {1, -1}}})->status, 400);
  EXPECT_EQ(h.post("/v1/tokenize", Json{{"prompt", 3}})->status, 400);
}

TEST(ServerEndpoints, FlushCacheOnlyWhenIdle) {
  Harness h;
  EXPECT_EQ(h.post("/flush_cache", nullptr)->status, 200);
  EXPECT_EQ(h.engine.flushes(), 1);
  auto running = h.start("POST", "/v1/completions", dump(Json{{"prompt", "x"}, {"max_tokens", 200}}));
  EXPECT_EQ(h.post("/flush_cache", nullptr)->status, 400);
  ASSERT_TRUE(running->wait());
}

// The flush is answered when the engine reaches a step boundary; meanwhile the connection's executor
// (an I/O thread) serves other requests: nothing waits on the engine.
TEST(ServerEndpoints, FlushCacheNeverBlocksTheIoThread) {
  Harness h;
  h.engine.pause(true);  // a step that does not end
  auto flush = h.start("POST", "/flush_cache", "");
  auto health = h.get("/health");  // on the same serial executor, right after
  EXPECT_EQ(health->status, 200);
  EXPECT_FALSE(flush->wait(0.1)) << "answered while the engine was in its step";
  h.engine.pause(false);
  ASSERT_TRUE(flush->wait());
  EXPECT_EQ(flush->status, 200);
}

TEST(ServerEndpoints, MetricsText) {
  Harness h;
  h.post("/v1/completions", Json{{"prompt", "x"}, {"max_tokens", 3}});
  auto r = h.get("/metrics");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type.rfind("text/plain", 0), 0u);
  for (const char* name : {"sglang:prompt_tokens_total{model_name=\"test-model\"}",
                           "sglang:generation_tokens_total{model_name=\"test-model\"} 3", "sglang:num_running_reqs",
                           "sglang:num_queue_reqs", "sglang:token_usage", "sglang:cache_hit_rate",
                           "# TYPE sglang:time_to_first_token_seconds histogram",
                           "sglang:time_to_first_token_seconds_count{model_name=\"test-model\"} 1",
                           "sglang:inter_token_latency_seconds_count{model_name=\"test-model\"} 2",
                           "sglang:e2e_request_latency_seconds_bucket{le=\"+Inf\",model_name=\"test-model\"} 1"})
    EXPECT_NE(r->body.find(name), std::string::npos) << name << "\n" << r->body;
  // Step time by phase (the values are the engine's: test_runtime_engine checks them).
  for (const char* phase : {"plan", "forward", "grammar_masks", "draw", "output", "drafts"})
    EXPECT_NE(r->body.find(std::string("dsserve:step_phase_seconds_total{model_name=\"test-model\",phase=\"") + phase +
                           "\"} "),
              std::string::npos)
        << phase;

  ServerConfig off = test_config();
  off.enable_metrics = false;
  Harness h2(off);
  EXPECT_EQ(h2.get("/metrics")->status, 404);
}

TEST(ServerMetrics, HistogramBucketsAreCumulative) {
  Histogram hist({0.1, 1.0});
  for (double v : {0.05, 0.1, 0.5, 2.0}) hist.observe(v);
  std::string out;
  hist.render("x", "help", "a=\"b\"", out);
  EXPECT_NE(out.find("x_bucket{le=\"0.1\",a=\"b\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{le=\"1\",a=\"b\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{le=\"+Inf\",a=\"b\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_count{a=\"b\"} 4\n"), std::string::npos) << out;
  EXPECT_EQ(prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(ServerParams, OpenAiDefaultsAndGenerationConfig) {
  SamplingDefaults none;
  GenerationParams p = parse_openai_params(Json{{"messages", Json::array()}}, OpenAiApi::Chat, none);
  EXPECT_EQ(p.sampling.temperature, 1.0f);
  EXPECT_EQ(p.sampling.top_p, 1.0f);
  EXPECT_EQ(p.sampling.top_k, -1);
  EXPECT_FALSE(p.max_new_tokens);
  EXPECT_EQ(p.n, 1);

  auto dir = std::filesystem::temp_directory_path() / "dsserve_genconfig_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "generation_config.json")
      << R"({"temperature": 0.6, "top_p": 0.95, "top_k": 0, "do_sample": true})";
  SamplingDefaults d = load_sampling_defaults(dir);
  EXPECT_FLOAT_EQ(*d.temperature, 0.6f);
  EXPECT_FLOAT_EQ(*d.top_p, 0.95f);
  EXPECT_FALSE(d.top_k);  // 0 means unset in HF
  p = parse_openai_params(Json::object(), OpenAiApi::Chat, d);
  EXPECT_FLOAT_EQ(p.sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(p.sampling.top_p, 0.95f);
  p = parse_openai_params(Json{{"temperature", 0.0}}, OpenAiApi::Chat, d);
  EXPECT_EQ(p.sampling.temperature, 0.0f);  // the request wins
  std::ofstream(dir / "generation_config.json") << R"({"do_sample": false})";
  EXPECT_EQ(*load_sampling_defaults(dir).temperature, 0.0f);
  std::ofstream(dir / "generation_config.json") << "{broken";
  EXPECT_THROW(load_sampling_defaults(dir), ds::Error);
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(load_sampling_defaults(dir).temperature);
}

TEST(ServerParams, OpenAiFields) {
  SamplingDefaults none;
  GenerationParams p = parse_openai_params(Json{{"max_tokens", 7},
                                                {"max_completion_tokens", 9},
                                                {"seed", -1},
                                                {"stop", "x"},
                                                {"ignore_eos", true},
                                                {"top_k", 5},
                                                {"min_p", 0.1},
                                                {"repetition_penalty", 1.1},
                                                {"frequency_penalty", 0.5},
                                                {"presence_penalty", -0.5},
                                                {"n", 2},
                                                {"logprobs", true},
                                                {"top_logprobs", 3}},
                                           OpenAiApi::Chat, none);
  EXPECT_EQ(*p.max_new_tokens, 9);
  EXPECT_EQ(*p.sampling.seed, uint64_t(-1));
  EXPECT_EQ(p.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(p.sampling.ignore_eos);
  EXPECT_EQ(p.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(p.sampling.min_p, 0.1f);
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.sampling.top_logprobs, 3);
  p = parse_openai_params(Json{{"max_tokens", 7}, {"logprobs", 4}}, OpenAiApi::Completions, none);
  EXPECT_EQ(*p.max_new_tokens, 7);
  EXPECT_TRUE(p.sampling.logprobs);
  EXPECT_EQ(p.sampling.top_logprobs, 4);
  EXPECT_THROW(parse_openai_params(Json{{"logprobs", true}}, OpenAiApi::Completions, none), ApiError);
  EXPECT_THROW(parse_openai_params(Json{{"min_tokens", 3}}, OpenAiApi::Chat, none), ApiError);
  EXPECT_EQ(parse_openai_params(Json{{"regex", "a"}}, OpenAiApi::Chat, none).grammar->field, "regex");
  EXPECT_THROW(parse_openai_params(Json{{"regex", "a"}, {"ebnf", "root ::= \"a\""}}, OpenAiApi::Chat, none), ApiError);
  // null counts as absent
  p = parse_openai_params(Json{{"temperature", nullptr}, {"stop", nullptr}}, OpenAiApi::Chat, none);
  EXPECT_EQ(p.sampling.temperature, 1.0f);
}

}  // namespace
}  // namespace ds::server::testing
