// NeMo-Skills' math metrics over N samples per problem, and its summary table:
//   pass@1[avg-of-N]  mean fraction of correct samples, "± s" = sample std (ddof 1) of the N
//                     per-run accuracies (run i = sample i of every problem);
//   majority@N        the most frequent answer among samples that have one (grouped by their
//                     normalised spelling); a tie scores the mean correctness of the tied answers;
//   pass@N            any sample correct;
//   no_answer         samples without a \boxed answer (pass@1: their fraction; majority@N and
//                     pass@N: problems where no sample has one).
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace ds::bench {

struct MathSample {
  std::optional<std::string> answer;  // the extracted answer; nullopt: none (or the request failed)
  bool correct = false;
  int tokens = 0;  // generated tokens (reasoning included)
};

struct MathMetricsRow {
  std::string mode;                   // "pass@1[avg-of-4]", "majority@4", "pass@4"
  double correct_pct = 0;             // symbolic_correct, percent
  std::optional<double> correct_std;  // percent; pass@1[avg-of-N] with N >= 2 only
  double no_answer_pct = 0;
};

struct MathMetrics {
  int num_entries = 0, avg_tokens = 0, gen_seconds = 0;
  std::vector<MathMetricsRow> rows;
};

// samples[p][i]: sample i of problem p; every problem needs the same N >= 1 samples.
MathMetrics compute_math_metrics(const std::vector<std::vector<MathSample>>& samples, double gen_seconds);

// The table `ns eval` prints (summarize_results): a title rule, then columns evaluation_mode |
// num_entries | avg_tokens | gen_seconds | symbolic_correct | no_answer.
std::string format_math_metrics(const std::string& benchmark, const MathMetrics& m);

}  // namespace ds::bench
