#include "bench/report.h"

#include <fmt/format.h>

#include <cmath>

namespace ds::bench {

using nlohmann::json;

std::string py_float(double x) {
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (std::isnan(x)) return "nan";
  std::string s = fmt::format("{}", x);  // shortest round-trip form, like Python's repr
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

namespace {
// Python's "{s:{c}^{n}}": centred, the odd fill character goes to the right.
std::string center(const std::string& s, size_t width, char fill) {
  if (s.size() >= width) return s;
  size_t pad = width - s.size(), left = pad / 2;
  return std::string(left, fill) + s + std::string(pad - left, fill);
}
// Python's "{:<10.2f}" prints nan as "nan"; fmt does the same.
void row(std::string& out, const std::string& label, const std::string& value) {
  out += fmt::format("{:<40} {:<10}\n", label, value);
}
void rowf(std::string& out, const std::string& label, double v) { out += fmt::format("{:<40} {:<10.2f}\n", label, v); }
}  // namespace

std::string format_report(const RunInfo& run, const Metrics& m) {
  std::string o = "\n" + center(" Serving Benchmark Result ", 50, '=') + "\n";
  row(o, "Backend:", run.backend);
  row(o, "Traffic request rate:", py_float(run.request_rate));
  row(o, "Max request concurrency:", run.max_concurrency > 0 ? std::to_string(run.max_concurrency) : "not set");
  row(o, "Successful requests:", std::to_string(m.completed));
  rowf(o, "Benchmark duration (s):", run.duration_s);
  row(o, "Total input tokens:", std::to_string(m.total_input));
  row(o, "Total input text tokens:", std::to_string(m.total_input));
  row(o, "Total input vision tokens:", "0");
  row(o, "Total generated tokens:", std::to_string(m.total_output));
  row(o, "Total generated tokens (retokenized):", std::to_string(m.total_output_retokenized));
  rowf(o, "Request throughput (req/s):", m.request_throughput);
  rowf(o, "Input token throughput (tok/s):", m.input_throughput);
  rowf(o, "Output token throughput (tok/s):", m.output_throughput);
  rowf(o, "Peak output token throughput (tok/s):", m.max_output_tokens_per_s);
  row(o, "Peak concurrent requests:", std::to_string(m.max_concurrent_requests));
  rowf(o, "Total token throughput (tok/s):", m.total_throughput);
  rowf(o, "Concurrency:", m.concurrency);
  if (run.accept_length && *run.accept_length != 0) rowf(o, "Accept length:", *run.accept_length);
  o += center("End-to-End Latency", 50, '-') + "\n";
  rowf(o, "Mean E2E Latency (ms):", m.mean_e2e_latency_ms);
  rowf(o, "Median E2E Latency (ms):", m.median_e2e_latency_ms);
  o += center("Time to First Token", 50, '-') + "\n";
  rowf(o, "Mean TTFT (ms):", m.mean_ttft_ms);
  rowf(o, "Median TTFT (ms):", m.median_ttft_ms);
  rowf(o, "P99 TTFT (ms):", m.p99_ttft_ms);
  o += center("Time per Output Token (excl. 1st token)", 50, '-') + "\n";
  rowf(o, "Mean TPOT (ms):", m.mean_tpot_ms);
  rowf(o, "Median TPOT (ms):", m.median_tpot_ms);
  rowf(o, "P99 TPOT (ms):", m.p99_tpot_ms);
  o += center("Inter-Token Latency", 50, '-') + "\n";
  rowf(o, "Mean ITL (ms):", m.mean_itl_ms);
  rowf(o, "Median ITL (ms):", m.median_itl_ms);
  rowf(o, "P95 ITL (ms):", m.p95_itl_ms);
  rowf(o, "P99 ITL (ms):", m.p99_itl_ms);
  rowf(o, "Max ITL (ms):", m.max_itl_ms);
  o += std::string(50, '=') + "\n";
  return o;
}

json result_record(const RunInfo& run, const Metrics& m, const std::vector<RequestOutput>& outputs,
                   const json& server_info) {
  json r;
  r["backend"] = run.backend;
  r["dataset_name"] = run.dataset_name;
  r["request_rate"] = std::isinf(run.request_rate) ? json("inf") : json(run.request_rate);
  r["max_concurrency"] = run.max_concurrency > 0 ? json(run.max_concurrency) : json(nullptr);
  r["sharegpt_output_len"] = run.sharegpt_output_len ? json(*run.sharegpt_output_len) : json(nullptr);
  r["random_input_len"] = run.random_input_len;
  r["random_output_len"] = run.random_output_len;
  r["random_range_ratio"] = run.random_range_ratio;
  r["server_info"] = server_info;
  r["duration"] = run.duration_s;
  r["completed"] = m.completed;
  r["failed"] = run.failed;
  r["total_input_tokens"] = m.total_input;
  r["total_input_text_tokens"] = m.total_input;
  r["total_input_vision_tokens"] = 0;
  r["total_output_tokens"] = m.total_output;
  r["total_output_tokens_retokenized"] = m.total_output_retokenized;
  r["request_throughput"] = m.request_throughput;
  r["input_throughput"] = m.input_throughput;
  r["output_throughput"] = m.output_throughput;
  r["total_throughput"] = m.total_throughput;
  auto put = [&](const char* k, double v) { r[k] = std::isnan(v) ? json(nullptr) : json(v); };
  put("mean_e2e_latency_ms", m.mean_e2e_latency_ms);
  put("median_e2e_latency_ms", m.median_e2e_latency_ms);
  put("std_e2e_latency_ms", m.std_e2e_latency_ms);
  put("p99_e2e_latency_ms", m.p99_e2e_latency_ms);
  put("mean_ttft_ms", m.mean_ttft_ms);
  put("median_ttft_ms", m.median_ttft_ms);
  put("std_ttft_ms", m.std_ttft_ms);
  put("p99_ttft_ms", m.p99_ttft_ms);
  put("mean_tpot_ms", m.mean_tpot_ms);
  put("median_tpot_ms", m.median_tpot_ms);
  put("std_tpot_ms", m.std_tpot_ms);
  put("p99_tpot_ms", m.p99_tpot_ms);
  put("mean_itl_ms", m.mean_itl_ms);
  put("median_itl_ms", m.median_itl_ms);
  put("std_itl_ms", m.std_itl_ms);
  put("p95_itl_ms", m.p95_itl_ms);
  put("p99_itl_ms", m.p99_itl_ms);
  put("max_itl_ms", m.max_itl_ms);
  r["concurrency"] = m.concurrency;
  r["accept_length"] = run.accept_length ? json(*run.accept_length) : json(nullptr);
  r["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
  r["max_concurrent_requests"] = m.max_concurrent_requests;
  // Per-request details (sglang's --output-details), always written here.
  json in_lens = json::array(), ttfts = json::array(), itls = json::array(), texts = json::array(),
       errors = json::array();
  for (const auto& o : outputs) {
    in_lens.push_back(o.prompt_len);
    ttfts.push_back(o.ttft);
    itls.push_back(o.itl);
    texts.push_back(o.generated_text);
    errors.push_back(o.error);
  }
  r["input_lens"] = in_lens;
  r["output_lens"] = m.output_lens;
  r["ttfts"] = ttfts;
  r["itls"] = itls;
  r["generated_texts"] = texts;
  r["errors"] = errors;
  return r;
}

}  // namespace ds::bench
