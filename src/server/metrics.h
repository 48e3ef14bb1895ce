// Prometheus metrics (/metrics, with --enable-metrics) under SGLang's names where SGLang has the
// metric (sglang:prompt_tokens_total, sglang:time_to_first_token_seconds, ...), labelled
// model_name="<served model name>" as SGLang does; our own extras are prefixed dsserve:.
// Counters and gauges are read from the engine's stats at scrape time; the latency histograms are
// observed by the server as responses go out.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace ds::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines (with HELP/TYPE) in the text exposition format.
  void render(const std::string& name, const std::string& help, const std::string& labels, std::string& out) const;
  uint64_t count() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  Histogram ttft, inter_token, e2e;
  // The whole exposition text.
  std::string render(const runtime::EngineStats& stats, const std::string& model_name) const;
};

// `value` escaped for a Prometheus label (backslash, quote, newline).
std::string prometheus_label(const std::string& value);

}  // namespace ds::server
