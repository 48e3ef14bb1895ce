#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace ds::server {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double v) {
  std::lock_guard lock(mu_);
  size_t b = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());  // first bound >= v
  ++counts_[b];
  sum_ += v;
  ++count_;
}

uint64_t Histogram::count() const {
  std::lock_guard lock(mu_);
  return count_;
}

void Histogram::render(const std::string& name, const std::string& help, const std::string& labels,
                       std::string& out) const {
  std::lock_guard lock(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? fmt::format("{}", bounds_[i]) : "+Inf";
    out += fmt::format("{}_bucket{{le=\"{}\",{}}} {}\n", name, le, labels, cumulative);
  }
  out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum_, name, labels, count_);
}

// SGLang's bucket bounds for the same histograms.
ServerMetrics::ServerMetrics()
    : ttft({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
            0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 15.0, 20.0, 25.0, 30.0}),
      inter_token({0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060,
                   0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0,   2.0,   4.0,   6.0,   8.0}),
      e2e({0.1,  0.2,  0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,  15.0,
           20.0, 30.0, 40.0, 50.0, 60.0, 90.0, 120.0, 150.0, 180.0, 240.0, 300.0, 600.0}) {}

std::string prometheus_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string ServerMetrics::render(const runtime::EngineStats& s, const std::string& model_name) const {
  const std::string labels = fmt::format("model_name=\"{}\"", prometheus_label(model_name));
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", name, help, name, type, name, labels, value);
  };
  metric("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", s.prompt_tokens_total);
  metric("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.",
         s.generation_tokens_total);
  metric("sglang:cached_tokens_total", "counter", "Number of cached prompt tokens.", s.cached_tokens_total);
  metric("sglang:num_requests_total", "counter", "Number of requests processed.", s.requests_total);
  metric("sglang:num_running_reqs", "gauge", "The number of running requests.", s.running);
  metric("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", s.queued);
  metric("sglang:num_used_tokens", "gauge", "The number of used tokens.",
         int64_t(s.used_pages - s.evictable_pages) * s.page_size);
  metric("sglang:max_total_num_tokens", "gauge", "Maximum total number of tokens.", int64_t(s.num_pages) * s.page_size);
  metric("sglang:token_usage", "gauge", "The token usage.", s.token_usage());
  metric("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.", s.cache_hit_rate);
  metric("sglang:spec_accept_length", "gauge",
         "The average acceptance length of speculative decoding (tokens per decode step).", s.spec_accept_length());
  metric("dsserve:spec_verify_steps_total", "counter", "Decode steps of speculating requests.", s.spec_verify_total);
  metric("dsserve:spec_draft_tokens_total", "counter", "Draft tokens verified.", s.spec_drafts_total);
  metric("dsserve:spec_accepted_tokens_total", "counter", "Draft tokens accepted.",
         s.spec_tokens_total - s.spec_verify_total);
  metric("dsserve:spec_pauses_total", "counter", "Times speculation paused (too few drafts accepted).",
         s.spec_pauses_total);
  // Per draft position (1 = the first draft of a step): verified and accepted counts.
  auto per_position = [&](const char* name, const char* help, const std::vector<int64_t>& v) {
    if (v.empty()) return;
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
    for (size_t j = 0; j < v.size(); ++j) out += fmt::format("{}{{{},position=\"{}\"}} {}\n", name, labels, j + 1, v[j]);
  };
  per_position("dsserve:spec_drafted_by_position_total", "Drafts verified at this position of a step.",
               s.spec_drafted_at);
  per_position("dsserve:spec_accepted_by_position_total", "Drafts accepted at this position of a step.",
               s.spec_accepted_at);
  if (s.pd.kv_sent_total || s.pd.kv_received_total || s.pd.kv_failed_total) {  // prefill/decode disaggregation
    metric("dsserve:pd_kv_sent_total", "counter", "Prompts whose KV was sent to a decode server.", s.pd.kv_sent_total);
    metric("dsserve:pd_kv_sent_bytes_total", "counter", "Bytes of KV sent to decode servers.", s.pd.kv_sent_bytes_total);
    metric("dsserve:pd_kv_pack_seconds_total", "counter", "Time spent packing KV rows for sending.",
           s.pd.kv_pack_seconds_total);
    metric("dsserve:pd_kv_received_total", "counter", "Prompts whose KV arrived from a prefill server.",
           s.pd.kv_received_total);
    metric("dsserve:pd_kv_received_bytes_total", "counter", "Bytes of KV received from prefill servers.",
           s.pd.kv_received_bytes_total);
    metric("dsserve:pd_kv_wait_seconds_total", "counter",
           "Time from a request's arrival to its KV joining the batch (prefill server + transfer + pages).",
           s.pd.kv_wait_seconds_total);
    metric("dsserve:pd_kv_unpack_seconds_total", "counter", "Time spent writing received KV rows into pages.",
           s.pd.kv_unpack_seconds_total);
    metric("dsserve:pd_kv_failed_total", "counter", "Parked requests that failed (KV error, timeout, no pages).",
           s.pd.kv_failed_total);
    metric("dsserve:pd_kv_buffer_lent_bytes", "gauge",
           "Page-locked host buffers holding packed KV now (sending, waiting for a decode server, or for pages).",
           s.pd.buffer_lent_bytes);
    metric("dsserve:pd_kv_buffer_kept_bytes", "gauge", "Page-locked host buffers kept for reuse.",
           s.pd.buffer_kept_bytes);
  }
  metric("dsserve:jump_forward_tokens_total", "counter",
         "Output tokens a grammar forced, appended without a forward pass each (jump-forward decoding).",
         s.jump_forward_tokens_total);
  metric("dsserve:retracted_requests_total", "counter", "Requests preempted for lack of KV pages.",
         s.retractions_total);
  metric("dsserve:engine_steps_total", "counter", "Engine steps run.", s.steps_total);
  {
    const char* name = "dsserve:step_phase_seconds_total";
    out += fmt::format("# HELP {} Time of engine steps by phase: plan (scheduling, inputs), forward (queued on the "
                       "device), grammar_masks (while the device runs), draw (waits for the device, samples), "
                       "output (accept, detokenize, deliver), drafts (draft model).\n# TYPE {} counter\n",
                       name, name);
    const auto& p = s.phases;
    for (auto [phase, ms] : {std::pair{"plan", p.plan_ms}, {"forward", p.forward_ms}, {"grammar_masks", p.masks_ms},
                             {"draw", p.draw_ms}, {"output", p.output_ms}, {"drafts", p.drafts_ms}})
      out += fmt::format("{}{{{},phase=\"{}\"}} {}\n", name, labels, phase, ms / 1000.0);
  }
  metric("dsserve:last_step_seconds", "gauge", "Wall time of the last engine step.", s.last_step_ms / 1000.0);
  metric("dsserve:last_step_overhead_seconds", "gauge",
         "Part of the last engine step outside the model forward (scheduling, sampling, output).",
         s.last_step_overhead_ms / 1000.0);
  // Data parallelism: each DP group's share (the gauges above are sums over the groups).
  auto per_dp = [&](const char* name, const char* help, auto value_of) {
    if (s.dp_groups.empty()) return;
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
    for (size_t g = 0; g < s.dp_groups.size(); ++g)
      out += fmt::format("{}{{{},dp_rank=\"{}\"}} {}\n", name, labels, g, value_of(s.dp_groups[g]));
  };
  per_dp("dsserve:dp_num_running_reqs", "Running requests of a DP group.",
         [](const runtime::DpGroupStats& d) { return d.running; });
  per_dp("dsserve:dp_num_queue_reqs", "Waiting requests of a DP group.",
         [](const runtime::DpGroupStats& d) { return d.queued; });
  per_dp("dsserve:dp_num_used_tokens", "Used KV tokens of a DP group's pool.",
         [&](const runtime::DpGroupStats& d) { return int64_t(d.used_pages - d.evictable_pages) * s.page_size; });
  per_dp("dsserve:dp_token_usage", "Token usage of a DP group's KV pool.", [](const runtime::DpGroupStats& d) {
    return d.num_pages ? double(d.used_pages - d.evictable_pages) / d.num_pages : 0.0;
  });
  per_dp("dsserve:dp_requests_routed", "Requests the router gave a DP group (a counter).",
         [](const runtime::DpGroupStats& d) { return d.requests_routed; });
  ttft.render("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels, out);
  inter_token.render("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", labels, out);
  e2e.render("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", labels, out);
  return out;
}

}  // namespace ds::server
