// GPQA (diamond) as sglang.test.run_eval --eval-name gpqa runs it (simple-evals): examples sampled
// and answer orders permuted with Python's random.Random(0), one chat request per question,
// "Answer: X" searched in the reply's content (after any reasoning), mean score over --repeat runs.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench/http_client.h"

namespace ds::bench {

inline constexpr const char* kGpqaUrl = "https://openaipublic.blob.core.windows.net/simple-evals/gpqa_diamond.csv";

struct GpqaExample {
  std::string question, correct;
  std::vector<std::string> incorrect;  // three
  std::vector<size_t> permutation;     // order of [correct, incorrect...] shown as A..D
};

std::vector<GpqaExample> read_gpqa_csv(const std::string& path);
// rng.sample(examples, num_examples) (when given), then one permutation per example, from Random(0).
std::vector<GpqaExample> gpqa_select(std::vector<GpqaExample> all, std::optional<int> num_examples);
// The user message and the correct letter for one example.
std::string gpqa_prompt(const GpqaExample& ex, char& correct_letter);
// re.search(r"(?i)Answer\s*:\s*([A-D])", text): the captured character (possibly lower case), or 0.
char gpqa_extract(const std::string& text);
// The part of a reply searched is reply_final_text (bench/eval_runner.h): content after any </think>.

struct GpqaOptions {
  Url url;
  std::string model, data_path, thinking_mode;
  std::optional<int> num_examples;
  int repeat = 1, num_threads = 512, max_tokens = 2048;
  double temperature = 0.0;
  std::optional<double> top_p;
  std::string reasoning_effort;
};

struct GpqaRun {
  double score = 0, score_std = 0, chars = 0, chars_std = 0;
  int failed_requests = 0;
  std::string first_error;
};

struct GpqaResult {
  std::vector<GpqaRun> runs;
  double mean_score = 0, latency_s = 0;
};

GpqaResult run_gpqa(const GpqaOptions& opt);
std::string format_gpqa(const GpqaResult& r);

}  // namespace ds::bench
