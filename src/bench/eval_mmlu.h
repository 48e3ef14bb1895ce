// 5-shot MMLU as sglang's benchmark/mmlu/bench_sglang.py runs it: per subject, the dev set's first
// k examples as shots, each test question as "...\nAnswer:", one greedy token, its first
// non-space character compared with the label.
#pragma once
#include <string>
#include <vector>

#include "bench/csv.h"
#include "bench/http_client.h"

namespace ds::bench {

inline constexpr const char* kMmluUrl = "https://people.eecs.berkeley.edu/~hendrycks/data.tar";

std::string mmlu_format_subject(const std::string& subject);  // "high_school_math" -> " high school math"
std::string mmlu_format_example(const CsvTable& rows, size_t idx, bool include_answer);
std::string mmlu_gen_prompt(const CsvTable& dev, const std::string& subject, int k);
// Prompt length used to drop shots above 1536 tokens. sglang counts with tiktoken (gpt-3.5-turbo);
// without it, about 4 bytes per token.
int mmlu_prompt_tokens(const std::string& text);
std::string mmlu_prediction(const std::string& output);  // first character after stripping, or ""

struct MmluOptions {
  Url url;
  std::string data_dir;  // holds dev/ and test/ with <subject>_dev.csv, <subject>_test.csv
  int nsub = 60, ntrain = 5, parallel = 64;
};

struct MmluSubject {
  std::string name;
  int questions = 0, correct = 0;
};

struct MmluResult {
  std::vector<MmluSubject> subjects;
  double accuracy = 0, latency_s = 0;
  int failed_requests = 0;
  std::string first_error;
};

MmluResult run_mmlu(const MmluOptions& opt);
// "subject: abstract_algebra, #q:100, acc: 0.300" lines, then "Total latency: ..." and "Average accuracy: ...".
std::string format_mmlu(const MmluResult& r);

}  // namespace ds::bench
