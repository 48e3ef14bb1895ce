// The serving benchmark's metrics, computed from per-request outcomes exactly as
// sglang.bench_serving's calculate_metrics does (same fields, same definitions).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "bench/tokenizer.h"
#include "bench/types.h"

namespace ds::bench {

struct Metrics {
  int completed = 0;
  long total_input = 0;
  long total_output = 0;
  long total_output_retokenized = 0;
  double request_throughput = 0, input_throughput = 0, output_throughput = 0;
  double output_throughput_retokenized = 0, total_throughput = 0, total_throughput_retokenized = 0;
  double mean_ttft_ms = 0, median_ttft_ms = 0, std_ttft_ms = 0, p99_ttft_ms = 0;
  double mean_tpot_ms = 0, median_tpot_ms = 0, std_tpot_ms = 0, p99_tpot_ms = 0;
  double mean_itl_ms = 0, median_itl_ms = 0, std_itl_ms = 0, p95_itl_ms = 0, p99_itl_ms = 0, max_itl_ms = 0;
  double mean_e2e_latency_ms = 0, median_e2e_latency_ms = 0, std_e2e_latency_ms = 0, p99_e2e_latency_ms = 0;
  double concurrency = 0;
  double max_output_tokens_per_s = 0;
  int max_concurrent_requests = 0;
  std::vector<int> output_lens;  // per request, 0 for failed ones (sglang's second return value)
  bool retokenized_from_server = false;  // no tokenizer: "retokenized" counts are the server's counts
};

// tokenizer may be null: retokenized counts then fall back to output_len, and ITLs are not
// re-split by token for speculative decoding (sglang's use_retokenized_itl).
Metrics calculate_metrics(const std::vector<DatasetRow>& inputs, const std::vector<RequestOutput>& outputs,
                          double duration_s, const TextTokenizer* tokenizer, const std::string& backend,
                          std::optional<double> accept_length);

// Per-second buckets from the first request's start: the largest number of output tokens seen in
// one second, and the largest number of requests in flight during one second.
void peak_metrics(const std::vector<RequestOutput>& outputs, double& max_tokens_per_s, int& max_concurrent);

}  // namespace ds::bench
