// Hostile input at the API layer (issue 22): request amplification, JSON numbers out of range,
// overflowing max_tokens, token ids beyond 32 bits and beyond the tokenizer, Bearer whitespace, and
// the one-line request log of large batches.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "server_test_util.h"

namespace ds::server::testing {
namespace {

runtime::EngineConfig small_queue(int32_t max_queued) {
  auto c = engine_config();
  c.max_queued_requests = max_queued;
  return c;
}

void expect_400(const RecordingResponder& r, const std::string& param, const std::string& text = "") {
  EXPECT_EQ(r.status, 400) << r.body;
  Json e = Json::parse(r.body)["error"];
  EXPECT_EQ(e["param"], param) << r.body;
  if (!text.empty()) {
    EXPECT_NE(e["message"].get<std::string>().find(text), std::string::npos) << r.body;
  }
}

// prompts x n engine requests beyond the queue are refused before anything is built or submitted.
TEST(ServerHardening, PromptsTimesNBeyondTheQueueIs400BeforeAnySubmit) {
  Harness h(test_config(), small_queue(8));
  Json texts = Json::array();
  for (int i = 0; i < 9; ++i) texts.push_back("hi");
  expect_400(*h.post("/generate", Json{{"text", texts}}), "text", "--max-queued-requests");
  expect_400(*h.post("/generate", Json{{"text", {"a", "b", "c"}}, {"sampling_params", {{"n", 3}}}}), "text",
             "3 prompts x n = 3");
  expect_400(*h.post("/generate", Json{{"input_ids", Json::array({{5}, {6}, {7}})}, {"sampling_params", {{"n", 3}}}}),
             "input_ids");
  expect_400(*h.post("/v1/completions", Json{{"prompt", texts}}), "prompt");
  expect_400(*h.post("/v1/chat/completions", user_chat("x", {{"n", 9}})), "n");
  EXPECT_TRUE(h.engine.submitted().empty());
  // At the limit it runs.
  EXPECT_EQ(h.post("/generate", Json{{"text", {"a", "b"}}, {"sampling_params", {{"n", 4}, {"max_new_tokens", 1}}}})->status,
            200);
  EXPECT_EQ(h.engine.submitted().size(), 8u);
  // A single id list is one prompt, however long.
  Json ids = Json::array();
  for (int i = 0; i < 20; ++i) ids.push_back(5);
  EXPECT_EQ(h.post("/v1/completions", Json{{"prompt", ids}, {"max_tokens", 1}})->status, 200);
}

// Every JSON error is the client's: 400 naming the field, never 500.
TEST(ServerHardening, JsonNumbersOutOfRangeName400TheField) {
  Harness h;
  auto raw = [&](const std::string& path, const std::string& body) {
    auto r = h.start("POST", path, body);
    EXPECT_TRUE(r->wait());
    return r;
  };
  expect_400(*raw("/v1/chat/completions",
                  R"({"messages": [{"role": "user", "content": "x"}], "temperature": 1e400})"),
             "temperature", "out of range");
  expect_400(*raw("/generate", R"({"text": "x", "sampling_params": {"top_p": -1e999}})"), "sampling_params.top_p");
  expect_400(*raw("/generate", R"({"input_ids": [5, 6, 1e400]})"), "input_ids[2]");
  expect_400(*raw("/generate", R"({"input_ids": [[5], [6, 2e400]]})"), "input_ids[1][1]");
  // Finite as a double, infinite as the float it becomes.
  expect_400(*raw("/v1/completions", R"({"prompt": "x", "frequency_penalty": 1e300})"), "frequency_penalty",
             "out of range");
  // Plain syntax errors still say where.
  auto r = raw("/v1/completions", R"({"prompt": "x", "max_tokens": 12x})");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Json::parse(r->body)["error"]["param"], "max_tokens");
  EXPECT_EQ(raw("/v1/completions", "[1, 2")->status, 400);
  EXPECT_TRUE(h.engine.submitted().empty());
}

TEST(ServerHardening, HugeMaxTokensIsAClear400) {
  Harness h;
  const int64_t big = INT64_MAX;
  expect_400(*h.post("/v1/chat/completions", user_chat("x", {{"max_tokens", big}})), "messages", "context length");
  expect_400(*h.post("/v1/completions", Json{{"prompt", "x"}, {"max_tokens", big}}), "prompt", "context length");
  expect_400(*h.post("/generate", Json{{"text", "x"}, {"sampling_params", {{"max_new_tokens", big}}}}),
             "sampling_params.max_new_tokens", "context length");
  EXPECT_TRUE(h.engine.submitted().empty());
}

TEST(ServerHardening, TokenIdsAreReportedAsSentAndTheModelVocabularyCounts) {
  ServerConfig cfg = test_config();
  Harness probe;
  const int32_t tok_vocab = probe.tok.vocab_size();
  cfg.model_vocab_size = tok_vocab + 10;  // as DeepSeek: the embedding has rows the tokenizer does not name
  Harness h(cfg);
  expect_400(*h.post("/generate", Json{{"input_ids", {5, 2147483648LL}}}), "input_ids", "2147483648");
  expect_400(*h.post("/generate", Json{{"input_ids", {5, uint64_t(18446744073709551615ULL)}}}), "input_ids",
             "18446744073709551615");
  expect_400(*h.post("/v1/completions", Json{{"prompt", {5, -7}}}), "prompt", "-7");
  expect_400(*h.post("/v1/completions", Json{{"prompt", {5, tok_vocab + 10}}}), "prompt",
             std::to_string(tok_vocab + 10));
  // Between the tokenizer's and the model's vocabulary: valid ids without text.
  auto r = h.post("/generate", Json{{"input_ids", {5, tok_vocab + 3}}, {"sampling_params", {{"max_new_tokens", 1}}}});
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(h.engine.submitted().back().prompt[1], tok_vocab + 3);
  Json d = body_json(*h.post("/v1/detokenize", Json{{"tokens", {tok_vocab + 3}}}));
  EXPECT_EQ(d["text"], "");
  expect_400(*h.post("/v1/detokenize", Json{{"tokens", {tok_vocab + 10}}}), "tokens");
}

TEST(ServerHardening, BearerSchemeIsCaseInsensitiveWithAnyRunOfSpaces) {
  ServerConfig cfg = test_config();
  cfg.api_key = "sk-secret";
  Harness h(cfg);
  auto status = [&](const std::string& auth) {
    return h.call("GET", "/v1/models", nullptr, {{"authorization", auth}})->status;
  };
  EXPECT_EQ(status("Bearer  sk-secret"), 200);
  EXPECT_EQ(status("bearer sk-secret"), 200);
  EXPECT_EQ(status("BEARER \t sk-secret "), 200);
  EXPECT_EQ(status("Bearer sk-secret x"), 401);
  EXPECT_EQ(status("Bearersk-secret"), 401);
  EXPECT_EQ(status("Basic sk-secret"), 401);
  EXPECT_EQ(status("Bearer  "), 401);
}

// A batch of many choices logs one short line: finish reasons as counts.
TEST(ServerHardening, BatchLogLineStaysShort) {
  Harness h(test_config(), small_queue(512));
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(sink);
  const auto level = logger->level();
  logger->set_level(spdlog::level::info);
  Json texts = Json::array();
  for (int i = 0; i < 100; ++i) texts.push_back("hello");
  auto r = h.post("/generate",
                  Json{{"text", texts}, {"sampling_params", {{"n", 3}, {"max_new_tokens", 2}, {"ignore_eos", true}}}});
  EXPECT_EQ(r->status, 200);
  logger->sinks().pop_back();
  logger->set_level(level);
  bool found = false;
  for (const auto& line : sink->last_formatted()) {
    if (line.find("finish") == std::string::npos) continue;
    found = true;
    EXPECT_NE(line.find("finish length x300"), std::string::npos) << line;
    EXPECT_LT(line.size(), 400u) << line;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace ds::server::testing
