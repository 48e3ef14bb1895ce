// Few-shot GSM8K as sglang.test.few_shot_gsm8k runs it: "Question: ...\nAnswer:" prompts after k
// solved examples, greedy /generate with stops, the last integer of the answer as the prediction.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "bench/http_client.h"

namespace ds::bench {

struct Gsm8kItem {
  std::string question, answer;
};

inline constexpr const char* kGsm8kUrl =
    "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl";

std::vector<Gsm8kItem> read_gsm8k_jsonl(const std::string& path);
std::string gsm8k_example(const Gsm8kItem& item, bool include_answer);
std::string gsm8k_few_shot(const std::vector<Gsm8kItem>& items, int k);

// The last run of digits after removing commas, as Python's ast.literal_eval would read it;
// nullopt is sglang's INVALID (no digits, or a number with a leading zero such as "07").
std::optional<std::string> gsm8k_answer_value(const std::string& text);

struct Gsm8kOptions {
  Url url;
  std::string data_path;
  int num_shots = 5, num_questions = 200, max_new_tokens = 512, parallel = 128;
};

struct Gsm8kResult {
  double accuracy = 0, invalid = 0, latency_s = 0, output_throughput = 0;
  int num_questions = 0, failed_requests = 0;
  std::string first_error;
  std::vector<std::string> outputs;
};

Gsm8kResult run_gsm8k(const Gsm8kOptions& opt);
// "Accuracy: 0.950\nInvalid: 0.000\nLatency: 12.345 s\nOutput throughput: 123.456 token/s\n"
std::string format_gsm8k(const Gsm8kResult& r);

}  // namespace ds::bench
