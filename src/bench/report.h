// The printed result block and the JSONL record of one run, laid out as sglang.bench_serving prints
// and dumps them.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bench/metrics.h"

namespace ds::bench {

struct RunInfo {
  std::string backend, dataset_name;
  double request_rate = 0;     // +inf = all at once
  int max_concurrency = 0;     // 0 = not set
  double duration_s = 0;
  std::optional<double> accept_length;
  int failed = 0;
  std::string first_error;
  int random_input_len = 0, random_output_len = 0;
  double random_range_ratio = 0;
  std::optional<int> sharegpt_output_len;
};

// Python's str(float): "inf", "16.0", "0.5".
std::string py_float(double x);

// "\n============ Serving Benchmark Result ============\n" ... "=====...=====\n".
std::string format_report(const RunInfo& run, const Metrics& m);

// sglang's `result` dict plus the per-request details (`result_details`).
nlohmann::json result_record(const RunInfo& run, const Metrics& m, const std::vector<RequestOutput>& outputs,
                             const nlohmann::json& server_info);

}  // namespace ds::bench
