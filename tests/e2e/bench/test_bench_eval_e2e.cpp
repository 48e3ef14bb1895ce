// Eval clients against the scripted server: a known set of replies must give a known score.
#include <gtest/gtest.h>

#include <mutex>
#include <regex>

#include "bench/eval_gpqa.h"
#include "bench/eval_gsm8k.h"
#include "bench/eval_mmlu.h"
#include "fake_llm_server.h"
#include "util/error.h"

using namespace ds::bench;
using namespace ds::bench::testing;
using nlohmann::json;

namespace {
const std::string kFixtures = std::string(DS_SOURCE_DIR) + "/tests/fixtures/bench/";

FakeReply text_reply(const std::string& text) {
  FakeReply r;
  r.pieces = {text};
  r.prompt_tokens = 1;
  return r;
}
}  // namespace

TEST(BenchEvalE2E, Gsm8kScoresKnownAnswers) {
  std::mutex mu;
  std::vector<json> seen;
  FakeLlmServer server([&](const std::string& path, const json& body) {
    EXPECT_EQ(path, "/generate");
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(body);
    }
    std::string prompt = body["text"];
    std::smatch m;
    std::string last = prompt.substr(prompt.rfind("Question: "));
    EXPECT_TRUE(std::regex_search(last, m, std::regex("Tom has (\\d+) boxes with (\\d+)")));
    int x = std::stoi(m[1]), y = std::stoi(m[2]), i = x - 2;
    if (i == 0) return text_reply(" The answer is 06.");  // leading zero: INVALID, as in sglang
    if (i == 9) return text_reply(" I cannot tell.");     // no number: INVALID
    if (i >= 7) return text_reply(" It is " + std::to_string(x * y + 1) + ".");
    return text_reply(" So " + std::to_string(x) + "*" + std::to_string(y) + " = " + std::to_string(x * y) + ".");
  });
  Gsm8kOptions opt;
  opt.url = Url::parse(server.url());
  opt.data_path = kFixtures + "gsm8k_test.jsonl";
  opt.num_shots = 3;
  opt.num_questions = 10;
  opt.parallel = 4;
  Gsm8kResult r = run_gsm8k(opt);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.6);
  EXPECT_DOUBLE_EQ(r.invalid, 0.2);
  EXPECT_EQ(r.failed_requests, 0);
  EXPECT_NE(format_gsm8k(r).find("Accuracy: 0.600\nInvalid: 0.200\nLatency: "), std::string::npos);
  ASSERT_EQ(seen.size(), 10u);
  const auto& b = seen[0];
  EXPECT_EQ(b["sampling_params"]["stop"], json({"Question", "Assistant:", "<|separator|>"}));
  EXPECT_EQ(b["sampling_params"]["temperature"], 0);
  EXPECT_EQ(b["sampling_params"]["max_new_tokens"], 512);
  std::string p = b["text"];
  EXPECT_EQ(p.rfind("Question: Tom has 2 boxes with 3 apples each.", 0), 0u);
  size_t count = 0;
  for (size_t pos = 0; (pos = p.find("Question: ", pos)) != std::string::npos; ++pos) ++count;
  EXPECT_EQ(count, 4u);  // three shots and the question
  EXPECT_TRUE(p.ends_with("\nAnswer:"));
}

TEST(BenchEvalE2E, MmluPerSubjectAccuracy) {
  FakeLlmServer server([&](const std::string&, const json& body) {
    EXPECT_EQ(body["sampling_params"]["max_new_tokens"], 1);
    std::string p = body["text"];
    std::smatch m;
    EXPECT_TRUE(std::regex_search(p, m, std::regex("(\\w+) test question (\\d+)")));
    std::string subj = m[1];
    int i = std::stoi(m[2]);
    EXPECT_EQ(p.rfind("The following are multiple choice questions (with answers) about" +
                          std::string(subj == "abstract_algebra" ? " abstract algebra" : " college physics") + ".\n\n",
                      0),
              0u);
    bool right = subj == "abstract_algebra" ? i % 2 == 0 : i < 5;
    return text_reply(right ? std::string(" ") + "ABCD"[i % 4] : " Z");
  });
  MmluOptions opt;
  opt.url = Url::parse(server.url());
  opt.data_dir = kFixtures + "mmlu";
  opt.parallel = 3;
  MmluResult r = run_mmlu(opt);
  ASSERT_EQ(r.subjects.size(), 2u);
  std::string out = format_mmlu(r);
  EXPECT_NE(out.find("subject: abstract_algebra, #q:4, acc: 0.500\n"), std::string::npos) << out;
  EXPECT_NE(out.find("subject: college_physics, #q:6, acc: 0.833\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Average accuracy: 0.700\n"), std::string::npos) << out;
  opt.nsub = 1;
  EXPECT_EQ(run_mmlu(opt).subjects.size(), 1u);
}

TEST(BenchEvalE2E, GpqaThinkingRepeats) {
  FakeLlmServer server([&](const std::string& path, const json& body) {
    EXPECT_EQ(path, "/v1/chat/completions");
    EXPECT_EQ(body["chat_template_kwargs"]["thinking"], true);
    EXPECT_EQ(body["top_p"], 0.95);
    EXPECT_EQ(body["max_tokens"], 64);
    EXPECT_EQ(body["model"], "fake-model");  // from /v1/models
    std::string p = body["messages"][0]["content"];
    std::smatch m;
    EXPECT_TRUE(std::regex_search(p, m, std::regex("GPQA question (\\d+)")));
    int k = std::stoi(m[1]);
    std::regex opt_re("\\n([ABCD])\\) right");
    EXPECT_TRUE(std::regex_search(p, m, opt_re));
    char right = m[1].str()[0];
    char wrong = right == 'A' ? 'B' : 'A';
    FakeReply r;
    r.reasoning = "Let me think. Answer: " + std::string(1, wrong);  // reasoning is not searched
    std::string content;
    if (k < 3) content = "Step by step.\nAnswer: " + std::string(1, right);
    else if (k == 3) content = "<think>Answer: " + std::string(1, wrong) + "</think>Answer: " + std::string(1, right);
    else if (k == 4) content = "Answer: " + std::string(1, wrong);
    else content = "Answer: " + std::string(1, char(right - 'A' + 'a'));  // lower case does not score
    r.pieces = {content};
    return r;
  });
  GpqaOptions opt;
  opt.url = Url::parse(server.url());
  opt.data_path = kFixtures + "gpqa_small.csv";
  opt.thinking_mode = "deepseek-v3";
  opt.top_p = 0.95;
  opt.max_tokens = 64;
  opt.repeat = 2;
  opt.num_examples = 6;
  GpqaResult r = run_gpqa(opt);
  ASSERT_EQ(r.runs.size(), 2u);
  EXPECT_NEAR(r.runs[0].score, 4.0 / 6, 1e-12);
  EXPECT_NEAR(r.mean_score, 4.0 / 6, 1e-12);
  std::string out = format_gpqa(r);
  EXPECT_NE(out.find("Repeat: 2, mean: 0.667\nScores: ['0.667', '0.667']\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Score: 0.667\n"), std::string::npos) << out;
}

TEST(BenchEvalE2E, MissingDataFailsFastWithWhereToPutIt) {
  setenv("DSSERVE_OFFLINE", "1", 1);
  Gsm8kOptions opt;
  opt.url = Url::parse("http://127.0.0.1:9");
  opt.data_path = "/nonexistent/dir/test.jsonl";
  try {
    run_gsm8k(opt);
    FAIL() << "no error";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("put it at /nonexistent/dir/test.jsonl"), std::string::npos) << e.what();
  }
  unsetenv("DSSERVE_OFFLINE");
}
