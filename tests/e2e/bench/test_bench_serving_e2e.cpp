// `dsserve bench serving` against the scripted server, for every API and streaming mode, and the
// client driving 1000 concurrent streams from one thread.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "bench/serving.h"
#include "cli_runner.h"
#include "fake_llm_server.h"

using namespace ds::bench;
using namespace ds::bench::testing;
using nlohmann::json;

namespace {
const std::string kFixtures = std::string(DS_SOURCE_DIR) + "/tests/fixtures/bench/";

std::string tmp_file(const std::string& name) {
  std::string p = ::testing::TempDir() + name;
  std::remove(p.c_str());
  return p;
}
}  // namespace

struct Mode {
  const char* backend;
  bool stream;
};

class BenchServingCli : public ::testing::TestWithParam<Mode> {};

TEST_P(BenchServingCli, ReportBlock) {
  FakeLlmServer server;
  // Unique per parameter and process: ctest runs the stream and whole variants side by side.
  std::string out, file = tmp_file(fmt::format("bench_{}_{}_{}.jsonl", GetParam().backend, GetParam().stream ? "stream" : "whole", getpid()));
  std::string args = fmt::format(
      "bench serving --backend {} --port {} --dataset-name sharegpt --dataset-path {}sharegpt_small.json "
      "--num-prompts 5 --sharegpt-output-len 8 --disable-tqdm --output-file {} {}",
      GetParam().backend, server.port(), kFixtures, file, GetParam().stream ? "" : "--disable-stream");
  ASSERT_EQ(run_cli(args, out), 0) << out;
  EXPECT_NE(out.find("\n============ Serving Benchmark Result ============\n"), std::string::npos) << out;
  EXPECT_NE(out.find(fmt::format("{:<40} {:<10}\n", "Backend:", GetParam().backend)), std::string::npos) << out;
  EXPECT_NE(out.find("Successful requests:                     5         \n"), std::string::npos) << out;
  EXPECT_NE(out.find("Total generated tokens:                  40        \n"), std::string::npos) << out;
  EXPECT_NE(out.find("Traffic request rate:                    inf       \n"), std::string::npos) << out;
  EXPECT_NE(out.find("Mean TPOT (ms):"), std::string::npos) << out;
  EXPECT_NE(out.find("Max ITL (ms):"), std::string::npos) << out;
  EXPECT_EQ(out.find("Failed requests"), std::string::npos) << out;
  std::ifstream in(file);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  json rec = json::parse(line);
  EXPECT_EQ(rec["completed"], 5);
  EXPECT_EQ(rec["total_output_tokens"], 40);
  EXPECT_EQ(rec["generated_texts"][0], "tok tok tok tok tok tok tok tok ");
  EXPECT_GT(rec["total_input_tokens"].get<int>(), 0);  // no tokenizer: the server's prompt counts
  if (GetParam().stream) {
    EXPECT_EQ(rec["itls"][0].size(), 7u);
  }
}

INSTANTIATE_TEST_SUITE_P(AllApis, BenchServingCli,
                         ::testing::Values(Mode{"sglang", true}, Mode{"sglang", false}, Mode{"sglang-oai", true},
                                           Mode{"sglang-oai", false}, Mode{"sglang-oai-chat", true},
                                           Mode{"sglang-oai-chat", false}, Mode{"openai-chat", true},
                                           Mode{"vllm", true}),
                         [](const auto& info) {
                           std::string n = std::string(info.param.backend) + (info.param.stream ? "_stream" : "_whole");
                           for (auto& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(BenchServingE2E, ConcurrencyCapRateAndAcceptLength) {
  // Paced requests (8 tokens, 5 ms apart), at most 2 at a time, Poisson arrivals at 200/s.
  FakeLlmServer server(
      [&](const std::string& path, const json& body) {
        FakeReply r = default_reply(path, body);
        r.piece_delay_s = 0.005;
        return r;
      },
      2.5);
  std::string out;
  std::string args = fmt::format(
      "bench serving --backend sglang --base-url {} --dataset-name sharegpt --dataset-path {}sharegpt_small.json "
      "--num-prompts 6 --sharegpt-output-len 8 --max-concurrency 2 --request-rate 200 --warmup-requests 0 "
      "--disable-tqdm --output-file {}",
      server.url(), kFixtures, tmp_file("bench_cap.jsonl"));
  ASSERT_EQ(run_cli(args, out), 0) << out;
  EXPECT_LE(server.max_inflight(), 2);
  EXPECT_NE(out.find("Max request concurrency:                 2         \n"), std::string::npos) << out;
  EXPECT_NE(out.find("Traffic request rate:                    200.0     \n"), std::string::npos) << out;
  EXPECT_NE(out.find("Accept length:                           2.50      \n"), std::string::npos) << out;
  EXPECT_NE(out.find("Peak concurrent requests:"), std::string::npos) << out;
}

TEST(BenchServingE2E, FailedRequestsCountedWithFirstError) {
  FakeLlmServer server([&](const std::string& path, const json& body) {
    FakeReply r = default_reply(path, body);
    if (body.value("prompt", "").find("topic number 2") != std::string::npos) {
      r.status = 500;
      r.error_body = "scripted failure";
    }
    return r;
  });
  std::string out;
  std::string args = fmt::format(
      "bench serving --backend sglang-oai --port {} --dataset-path {}sharegpt_small.json --num-prompts 8 "
      "--sharegpt-output-len 4 --warmup-requests 0 --disable-tqdm --output-file {}",
      server.port(), kFixtures, tmp_file("bench_fail.jsonl"));
  ASSERT_EQ(run_cli(args, out), 0) << out;
  EXPECT_NE(out.find("Failed requests: 1 (first error: Error: scripted failure)"), std::string::npos) << out;
  EXPECT_NE(out.find("Successful requests:                     7         \n"), std::string::npos) << out;
}

TEST(BenchServingE2E, ClearErrors) {
  std::string out;
  EXPECT_EQ(run_cli("bench serving --port 9 --model m --dataset-name random", out), 1);
  EXPECT_NE(out.find("error: --dataset-name random needs a tokenizer"), std::string::npos) << out;
  EXPECT_EQ(run_cli("bench serving --port 9 --model m --dataset-path /nonexistent.json", out), 1);
  EXPECT_NE(out.find("error: --dataset-path /nonexistent.json does not exist"), std::string::npos) << out;
  EXPECT_EQ(run_cli("bench serving --port 9 --tokenizer /tmp --model m", out), 1);
  EXPECT_NE(out.find("error: tokenizer: no tokenizer.json in /tmp"), std::string::npos) << out;
  EXPECT_EQ(run_cli("bench serving --port 9 --dataset-path x.json", out), 1);  // nothing listens on port 9
  EXPECT_NE(out.find("error: failed to fetch the model"), std::string::npos) << out;
}

TEST(BenchServingE2E, NoTokenizerAsksTheServerAndSaysWhyNot) {
  // The scripted server names no tokenizer (no tokenizer_path / model_path / root): a clear error.
  FakeLlmServer server;
  std::string out;
  EXPECT_EQ(run_cli(fmt::format("bench serving --port {} --dataset-name random --num-prompts 2", server.port()), out), 1);
  EXPECT_NE(out.find("error: --dataset-name random needs a tokenizer and none was given: the server at"),
            std::string::npos) << out;
  EXPECT_NE(out.find("did not say which tokenizer it serves"), std::string::npos) << out;
  EXPECT_NE(out.find("pass --tokenizer DIR"), std::string::npos) << out;
}

TEST(BenchServingE2E, OneThreadDrivesAThousandStreams) {
  FakeLlmServer server;
  std::vector<DatasetRow> rows(1000, DatasetRow{"a b c d", 4, 16});
  ServingOptions opt;
  opt.backend = "sglang-oai-chat";
  opt.url = Url::parse(server.url());
  opt.model = "fake-model";
  opt.warmup_requests = 0;
  opt.progress = false;
  std::mt19937_64 rng(1);
  ServingRun run = run_serving(rows, opt, rng);
  int ok = 0;
  for (const auto& o : run.outputs) ok += o.success && o.generated_text.size() == 16 * 4;
  EXPECT_EQ(ok, 1000) << run.outputs[0].error;
  EXPECT_LE(run.connections, 1000u);
  EXPECT_LT(run.duration_s, 30.0);
}
