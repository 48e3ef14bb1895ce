#include "bench/metrics.h"

#include <algorithm>
#include <cmath>

#include "bench/stats.h"

namespace ds::bench {

namespace {
// sglang writes np.mean(xs or 0): an empty list summarises as 0, not NaN.
std::vector<double> or_zero(const std::vector<double>& v) { return v.empty() ? std::vector<double>{0.0} : v; }
}  // namespace

void peak_metrics(const std::vector<RequestOutput>& outputs, double& max_tokens_per_s, int& max_concurrent) {
  max_tokens_per_s = 0;
  max_concurrent = 0;
  double min_start = 0, max_end = 0;
  bool any = false;
  for (const auto& o : outputs) {
    if (!o.success) continue;
    min_start = any ? std::min(min_start, o.start_time) : o.start_time;
    max_end = any ? std::max(max_end, o.start_time + o.latency) : o.start_time + o.latency;
    any = true;
  }
  if (!any) return;
  long buckets = static_cast<long>(std::ceil(max_end - min_start)) + 1;
  std::vector<double> tokens(buckets, 0.0);
  std::vector<int> running(buckets, 0);
  for (const auto& o : outputs) {
    if (!o.success) continue;
    double t = o.start_time + o.ttft;
    auto count = [&](double when) {
      long b = static_cast<long>(when - min_start);  // int() truncates toward zero
      if (b >= 0 && b < buckets) tokens[b] += 1;
    };
    count(t);
    for (double gap : o.itl) count(t += gap);
    long first = static_cast<long>(o.start_time - min_start);
    long last = static_cast<long>(o.start_time + o.latency - min_start);
    for (long s = first; s < std::min(last + 1, buckets); ++s) running[s] += 1;
  }
  max_tokens_per_s = *std::max_element(tokens.begin(), tokens.end());
  max_concurrent = *std::max_element(running.begin(), running.end());
}

Metrics calculate_metrics(const std::vector<DatasetRow>& inputs, const std::vector<RequestOutput>& outputs,
                          double dur_s, const TextTokenizer* tokenizer, const std::string& backend,
                          std::optional<double> accept_length) {
  Metrics m;
  std::vector<int> retok_lens;
  std::vector<double> itls, tpots, ttfts, e2e, retok_itls;
  bool use_retokenized_itl = tokenizer && accept_length && *accept_length > 0 &&
                             (backend == "sglang-oai" || backend == "sglang-oai-chat");
  m.retokenized_from_server = tokenizer == nullptr;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& o = outputs[i];
    if (!o.success) {
      m.output_lens.push_back(0);
      retok_lens.push_back(0);
      continue;
    }
    int out_len = o.output_len;
    m.output_lens.push_back(out_len);
    retok_lens.push_back(tokenizer ? static_cast<int>(tokenizer->encode(o.generated_text).size()) : out_len);
    int in_len = inputs[i].prompt_len >= 0 ? inputs[i].prompt_len : std::max(o.server_prompt_tokens, 0);
    m.total_input += in_len;
    if (out_len > 1) tpots.push_back((o.latency - o.ttft) / (out_len - 1));
    if (use_retokenized_itl) {
      for (size_t k = 0; k < o.itl.size() && k < o.text_chunks.size(); ++k) {
        size_t n = tokenizer->encode(o.text_chunks[k]).size();
        // sglang divides by the count unguarded; a chunk that encodes to nothing adds no ITL here.
        for (size_t j = 0; j < n; ++j) retok_itls.push_back(o.itl[k] / double(n));
      }
    } else {
      itls.insert(itls.end(), o.itl.begin(), o.itl.end());
    }
    ttfts.push_back(o.ttft);
    e2e.push_back(o.latency);
    m.completed += 1;
  }
  if (use_retokenized_itl) itls = retok_itls;
  peak_metrics(outputs, m.max_output_tokens_per_s, m.max_concurrent_requests);

  for (int x : m.output_lens) m.total_output += x;
  for (int x : retok_lens) m.total_output_retokenized += x;
  m.request_throughput = m.completed / dur_s;
  m.input_throughput = m.total_input / dur_s;
  m.output_throughput = m.total_output / dur_s;
  m.output_throughput_retokenized = m.total_output_retokenized / dur_s;
  m.total_throughput = (m.total_input + m.total_output) / dur_s;
  m.total_throughput_retokenized = (m.total_input + m.total_output_retokenized) / dur_s;

  auto t = or_zero(ttfts), p = or_zero(tpots), l = or_zero(itls);
  m.mean_ttft_ms = np_mean(t) * 1000;
  m.median_ttft_ms = np_median(t) * 1000;
  m.std_ttft_ms = np_std(t) * 1000;
  m.p99_ttft_ms = np_percentile(t, 99) * 1000;
  m.mean_tpot_ms = np_mean(p) * 1000;
  m.median_tpot_ms = np_median(p) * 1000;
  m.std_tpot_ms = np_std(p) * 1000;
  m.p99_tpot_ms = np_percentile(p, 99) * 1000;
  m.mean_itl_ms = np_mean(l) * 1000;
  m.median_itl_ms = np_median(l) * 1000;
  m.std_itl_ms = np_std(l) * 1000;
  m.p95_itl_ms = np_percentile(l, 95) * 1000;
  m.p99_itl_ms = np_percentile(l, 99) * 1000;
  m.max_itl_ms = np_max(l) * 1000;
  // E2E has no "or 0" in sglang: with no successful request these are NaN.
  m.mean_e2e_latency_ms = np_mean(e2e) * 1000;
  m.median_e2e_latency_ms = np_median(e2e) * 1000;
  m.std_e2e_latency_ms = np_std(e2e) * 1000;
  m.p99_e2e_latency_ms = np_percentile(e2e, 99) * 1000;
  double sum_e2e = 0;
  for (double x : e2e) sum_e2e += x;
  m.concurrency = sum_e2e / dur_s;
  return m;
}

}  // namespace ds::bench
