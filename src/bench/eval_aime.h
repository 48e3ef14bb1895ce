// AIME 2024/2025 as the seed measures them with NeMo-Skills (`ns eval --benchmarks=aime25:4`,
// prompt config generic/math): one chat request per problem and sample, thinking on,
// temperature 1.0, top_p 0.95, 64000 generated tokens; the last \boxed{} of the final answer
// (reasoning excluded) graded symbolically (bench/math_answer.h); pass@1 averaged over the N
// samples, majority@N and pass@N (bench/eval_math_metrics.h).
#pragma once
#include <string>
#include <vector>

#include "bench/eval_math_metrics.h"
#include "bench/http_client.h"

namespace ds::bench {

// NeMo-Skills ships both sets as JSONL with "problem" and "expected_answer".
inline constexpr const char* kAime25Url =
    "https://raw.githubusercontent.com/NVIDIA/NeMo-Skills/main/nemo_skills/dataset/aime25/test.txt";
inline constexpr const char* kAime24Url =
    "https://raw.githubusercontent.com/NVIDIA/NeMo-Skills/main/nemo_skills/dataset/aime24/test.txt";

struct MathProblem {
  std::string id, problem, answer;
};

// One JSON object per line: the problem under "problem" or "question", the answer under
// "expected_answer" or "answer" (a string or a number), an optional "id".
std::vector<MathProblem> read_math_problems(const std::string& path);

// NeMo-Skills' generic/math user message.
std::string math_prompt(const std::string& problem);

struct AimeOptions {
  Url url;
  std::string benchmark = "aime25";  // aime25 | aime24: the download URL and the table's title
  std::string model, data_path, output_file;
  std::string thinking_mode = "deepseek-v3";  // deepseek-v3 | deepseek-r1 | qwen3 | none
  int num_samples = 4, max_tokens = 64000, parallel = 128, num_problems = 0;  // 0: all problems
  double temperature = 1.0, top_p = 0.95;
};

struct AimeResult {
  std::string benchmark;
  MathMetrics metrics;
  int failed_requests = 0;
  std::string first_error;
};

AimeResult run_aime(const AimeOptions& opt);
std::string format_aime(const AimeResult& r);

}  // namespace ds::bench
