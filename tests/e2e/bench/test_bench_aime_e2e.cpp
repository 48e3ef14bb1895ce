// `eval aime25|aime24` against the scripted server: replies whose answers are known per problem
// and sample (seed) must give known pass@1 / majority / pass@N figures, and the table to print.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>

#include "bench/eval_aime.h"
#include "cli_runner.h"
#include "fake_llm_server.h"
#include "util/error.h"

using namespace ds::bench;
using namespace ds::bench::testing;
using nlohmann::json;

namespace {
const std::string kFixture = std::string(DS_SOURCE_DIR) + "/tests/fixtures/bench/aime_small.jsonl";

// 100 completion tokens per reply: the content, then empty pieces.
FakeReply answer(const std::string& content, const std::string& reasoning = "") {
  FakeReply r;
  r.pieces.assign(100, "");
  r.pieces[0] = content;
  r.reasoning = reasoning;
  return r;
}

// Per problem (see aime_small.jsonl) and seed:
//   0 (70):  right every time; wrong boxes only in the reasoning (either channel)   -> 4/4
//   1 (12):  right for seeds 0 and 1, 13 otherwise: a 2-2 tie                        -> 2/4, majority 0.5
//   2 (500): "0500", "500^\circ", 499, "5 \cdot 10^2": symbolic checking            -> 3/4, majority 1
//   3 (7):   8 three times; seed 3's request fails (HTTP 400)                        -> 0/4, one no-answer
//   4 (33):  never boxed                                                             -> 0/4, all no-answer
FakeReply scripted(const json& body) {
  std::string prompt = body["messages"][0]["content"];
  std::smatch m;
  if (!std::regex_search(prompt, m, std::regex("Fake problem (\\d)"))) return answer("no problem found");
  int problem = std::stoi(m[1]), seed = body["seed"];
  switch (problem) {
    case 0:
      return seed == 1 ? answer("<think>maybe \\boxed{3}</think>So the answer is $\\boxed{70}$.")
                       : answer("Therefore \\boxed{70}.", "Perhaps \\boxed{69}? No.");
    case 1: return answer(seed < 2 ? "\\boxed{12}" : "\\boxed{13}");
    case 2: {
      const char* replies[] = {"\\boxed{0500}", "\\boxed{500^\\circ}", "\\boxed{499}", "\\boxed{5 \\cdot 10^2}"};
      return answer(replies[seed]);
    }
    case 3:
      if (seed == 3) {
        FakeReply r;
        r.status = 400;
        r.error_body = R"({"error":{"message":"scripted failure"}})";
        return r;
      }
      return answer("\\boxed{8}");
    default: return answer("The answer is 33.");
  }
}
}  // namespace

TEST(BenchAimeE2E, ScoresKnownAnswers) {
  std::mutex mu;
  std::vector<json> seen;
  FakeLlmServer server([&](const std::string& path, const json& body) {
    EXPECT_EQ(path, "/v1/chat/completions");
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(body);
    }
    return scripted(body);
  });
  AimeOptions opt;
  opt.url = Url::parse(server.url());
  opt.data_path = kFixture;
  opt.parallel = 3;
  opt.output_file = ::testing::TempDir() + "aime_samples.jsonl";
  AimeResult r = run_aime(opt);

  ASSERT_EQ(seen.size(), 20u);  // 5 problems x 4 samples, no retry of a 4xx
  EXPECT_LE(server.max_inflight(), 3);
  std::set<int> seeds;
  for (const auto& b : seen) {
    EXPECT_EQ(b["model"], "fake-model");  // from /v1/models
    EXPECT_EQ(b["temperature"], 1.0);
    EXPECT_EQ(b["top_p"], 0.95);
    EXPECT_EQ(b["max_tokens"], 64000);
    EXPECT_EQ(b["chat_template_kwargs"]["thinking"], true);
    ASSERT_EQ(b["messages"].size(), 1u);
    EXPECT_EQ(b["messages"][0]["role"], "user");
    std::string prompt = b["messages"][0]["content"];
    EXPECT_EQ(prompt.rfind("Solve the following math problem. Make sure to put the answer (and only answer) inside "
                           "\\boxed{}.\n\nFake problem ",
                           0),
              0u)
        << prompt;
    seeds.insert(b["seed"].get<int>());
  }
  EXPECT_EQ(seeds, (std::set<int>{0, 1, 2, 3}));

  EXPECT_EQ(r.failed_requests, 1);
  EXPECT_NE(r.first_error.find("HTTP 400"), std::string::npos) << r.first_error;
  const MathMetrics& m = r.metrics;
  EXPECT_EQ(m.num_entries, 5);
  EXPECT_EQ(m.avg_tokens, 95);  // (4 x 100 + 4 x 100 + 4 x 100 + 3 x 100 / 4 + 4 x 100) / 5 per problem
  ASSERT_EQ(m.rows.size(), 3u);
  EXPECT_NEAR(m.rows[0].correct_pct, 45.0, 1e-9);  // (1 + 0.5 + 0.75 + 0 + 0) / 5
  ASSERT_TRUE(m.rows[0].correct_std);
  EXPECT_NEAR(*m.rows[0].correct_std, 19.148542155126762, 1e-9);  // runs 0.6 0.6 0.2 0.4, sample std
  EXPECT_NEAR(m.rows[0].no_answer_pct, 25.0, 1e-9);               // (0.25 + 1) / 5
  EXPECT_NEAR(m.rows[1].correct_pct, 50.0, 1e-9);                 // (1 + 0.5 + 1) / 5
  EXPECT_NEAR(m.rows[1].no_answer_pct, 20.0, 1e-9);
  EXPECT_NEAR(m.rows[2].correct_pct, 60.0, 1e-9);
  EXPECT_NEAR(m.rows[2].no_answer_pct, 20.0, 1e-9);

  std::string table = format_aime(r);
  EXPECT_NE(table.find(" aime25 "), std::string::npos) << table;
  EXPECT_NE(table.find("\npass@1[avg-of-4] | 5           | 95         | "), std::string::npos) << table;
  EXPECT_NE(table.find("| 45.00% \xC2\xB1 19.15%  | 25.00%"), std::string::npos) << table;
  EXPECT_NE(table.find("\nmajority@4       | 5           | 95 "), std::string::npos) << table;
  EXPECT_NE(table.find("\npass@4           | 5 "), std::string::npos) << table;

  // One record per sample, the failed one with its error.
  std::ifstream in(opt.output_file);
  std::string line;
  int lines = 0, errors = 0, correct = 0;
  while (std::getline(in, line)) {
    json rec = json::parse(line);
    ++lines;
    errors += rec.contains("error");
    correct += rec["symbolic_correct"].get<bool>();
    if (rec["id"] == "fake-2" && rec["sample"] == 3) {
      EXPECT_EQ(rec["predicted_answer"], "5 \\cdot 10^2");
    }
    if (rec["id"] == "fake-4") {
      EXPECT_TRUE(rec["predicted_answer"].is_null());
    }
  }
  EXPECT_EQ(lines, 20);
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(correct, 9);  // 4 + 2 + 3
}

TEST(BenchAimeE2E, OneSampleNoThinkingFewerProblems) {
  std::atomic<int> asked{0};
  FakeLlmServer server([&](const std::string&, const json& body) {
    ++asked;
    EXPECT_FALSE(body.contains("chat_template_kwargs"));
    EXPECT_EQ(body["max_tokens"], 1000);
    EXPECT_EQ(body["seed"], 0);
    return scripted(body);
  });
  AimeOptions opt;
  opt.url = Url::parse(server.url());
  opt.benchmark = "aime24";
  opt.data_path = kFixture;
  opt.num_samples = 1;
  opt.num_problems = 2;
  opt.max_tokens = 1000;
  opt.thinking_mode = "none";
  AimeResult r = run_aime(opt);
  EXPECT_EQ(asked.load(), 2);  // counted on arrival: the server counts a request only after its reply is written
  ASSERT_EQ(r.metrics.rows.size(), 2u);
  EXPECT_EQ(r.metrics.rows[0].mode, "pass@1[avg-of-1]");
  EXPECT_NEAR(r.metrics.rows[0].correct_pct, 100.0, 1e-9);  // problems 0 and 1 at seed 0
  std::string table = format_aime(r);
  EXPECT_EQ(table.find("majority"), std::string::npos) << table;
  EXPECT_NE(table.find(" aime24 "), std::string::npos) << table;
}

TEST(BenchAimeE2E, MissingDataNamesTheFlag) {
  setenv("DSSERVE_OFFLINE", "1", 1);
  AimeOptions opt;
  opt.url = Url::parse("http://127.0.0.1:9");
  opt.data_path = "/nonexistent/dir/aime25.jsonl";
  try {
    run_aime(opt);
    FAIL() << "no error";
  } catch (const ds::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("--data-path"), std::string::npos) << msg;
    EXPECT_NE(msg.find("put it at /nonexistent/dir/aime25.jsonl"), std::string::npos) << msg;
  }
  unsetenv("DSSERVE_OFFLINE");
}

TEST(BenchAimeE2E, BadDataLineIsNamed) {
  std::string path = ::testing::TempDir() + "aime_bad.jsonl";
  std::ofstream(path) << "{\"problem\": \"p\", \"expected_answer\": \"1\"}\n{\"problem\": \"no answer\"}\n";
  try {
    read_math_problems(path);
    FAIL() << "no error";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2:"), std::string::npos) << e.what();
  }
}

TEST(BenchAimeE2E, CliPrintsTheTable) {
  FakeLlmServer server([&](const std::string&, const json& body) { return scripted(body); });
  std::string out;
  int rc = run_cli("eval aime25 --base-url " + server.url() + " --data-path " + kFixture + " --parallel 8", out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Failed requests: 1 (first error: HTTP 400"), std::string::npos) << out;
  EXPECT_NE(out.find("pass@1[avg-of-4] | 5           | 95         | "), std::string::npos) << out;
  EXPECT_NE(out.find("45.00% \xC2\xB1 19.15%"), std::string::npos) << out;
  rc = run_cli("eval aime25 --base-url " + server.url() + " --thinking-mode maybe", out);
  EXPECT_NE(rc, 0) << out;
}
