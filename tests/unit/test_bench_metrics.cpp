// Metric arithmetic of the serving benchmark on recorded timings, against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "bench/metrics.h"
#include "bench/report.h"
#include "bench/stats.h"
#include "bench_fakes.h"

using namespace ds::bench;

TEST(BenchStats, NumpyDefinitions) {
  std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(np_mean(v), 2.5);
  EXPECT_DOUBLE_EQ(np_median(v), 2.5);
  EXPECT_NEAR(np_std(v), std::sqrt(1.25), 1e-12);  // population std
  EXPECT_NEAR(np_percentile(v, 99), 3.97, 1e-12);  // linear: 3 + 0.97 * (4 - 3)
  EXPECT_NEAR(np_percentile(v, 95), 3.85, 1e-12);
  EXPECT_DOUBLE_EQ(np_percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(np_percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(np_median({5, 1, 3}), 3);
  EXPECT_TRUE(std::isnan(np_mean({})));
}

namespace {
// Two successful requests and one failure, with timings chosen to give round numbers.
std::vector<RequestOutput> recorded() {
  RequestOutput a, b, c;
  a.success = true, a.start_time = 100.0, a.ttft = 0.5, a.itl = {0.25, 0.25, 0.5}, a.latency = 1.5, a.output_len = 4;
  a.generated_text = "a b c d";
  b.success = true, b.start_time = 100.2, b.ttft = 1.0, b.itl = {0.5}, b.latency = 2.0, b.output_len = 2;
  b.generated_text = "x y";
  c.success = false, c.error = "boom";
  return {a, b, c};
}
std::vector<DatasetRow> rows() { return {{"p", 10, 4}, {"q", 20, 2}, {"r", 30, 8}}; }
}  // namespace

TEST(BenchMetrics, HandComputed) {
  ds::bench::testing::WordTokenizer tok;
  Metrics m = calculate_metrics(rows(), recorded(), 4.0, &tok, "sglang", std::nullopt);
  EXPECT_EQ(m.completed, 2);
  EXPECT_EQ(m.total_input, 30);  // failed requests count no input
  EXPECT_EQ(m.total_output, 6);
  EXPECT_EQ(m.total_output_retokenized, 6);
  EXPECT_EQ(m.output_lens, (std::vector<int>{4, 2, 0}));
  EXPECT_DOUBLE_EQ(m.request_throughput, 0.5);
  EXPECT_DOUBLE_EQ(m.input_throughput, 7.5);
  EXPECT_DOUBLE_EQ(m.output_throughput, 1.5);
  EXPECT_DOUBLE_EQ(m.total_throughput, 9.0);
  // TTFT [0.5, 1.0]
  EXPECT_NEAR(m.mean_ttft_ms, 750, 1e-9);
  EXPECT_NEAR(m.median_ttft_ms, 750, 1e-9);
  EXPECT_NEAR(m.p99_ttft_ms, 995, 1e-9);
  // TPOT excludes the first token: (1.5 - 0.5) / 3 and (2.0 - 1.0) / 1
  EXPECT_NEAR(m.mean_tpot_ms, (1000.0 / 3 + 1000) / 2, 1e-9);
  EXPECT_NEAR(m.median_tpot_ms, (1000.0 / 3 + 1000) / 2, 1e-9);
  EXPECT_NEAR(m.p99_tpot_ms, 1000.0 / 3 + 0.99 * (1000 - 1000.0 / 3), 1e-9);
  // ITL [0.25, 0.25, 0.5, 0.5]
  EXPECT_NEAR(m.mean_itl_ms, 375, 1e-9);
  EXPECT_NEAR(m.median_itl_ms, 375, 1e-9);
  EXPECT_NEAR(m.p95_itl_ms, 500, 1e-9);
  EXPECT_NEAR(m.p99_itl_ms, 500, 1e-9);
  EXPECT_NEAR(m.max_itl_ms, 500, 1e-9);
  // E2E [1.5, 2.0]
  EXPECT_NEAR(m.mean_e2e_latency_ms, 1750, 1e-9);
  EXPECT_NEAR(m.median_e2e_latency_ms, 1750, 1e-9);
  EXPECT_NEAR(m.p99_e2e_latency_ms, 1995, 1e-9);
  EXPECT_NEAR(m.concurrency, 3.5 / 4, 1e-12);
  // Second buckets from t=100: tokens at 100.5 100.75 101.0 101.5 | 101.2 101.7 -> [2, 4, 0, 0];
  // requests span seconds {0, 1} and {0, 1, 2} -> [2, 2, 1, 0].
  EXPECT_DOUBLE_EQ(m.max_output_tokens_per_s, 4);
  EXPECT_EQ(m.max_concurrent_requests, 2);
}

TEST(BenchMetrics, WithoutTokenizerUsesServerCounts) {
  auto out = recorded();
  out[1].output_len = 3;
  out[0].server_prompt_tokens = 11;
  auto r = rows();
  r[0].prompt_len = -1;  // unknown: the server's count stands in
  Metrics m = calculate_metrics(r, out, 4.0, nullptr, "sglang", std::nullopt);
  EXPECT_TRUE(m.retokenized_from_server);
  EXPECT_EQ(m.total_input, 31);
  EXPECT_EQ(m.total_output_retokenized, 7);
}

TEST(BenchMetrics, RetokenizedItlForSpeculativeDecoding) {
  // sglang-oai with an accept length: each chunk's gap is split evenly over its tokens.
  ds::bench::testing::WordTokenizer tok;
  RequestOutput a;
  a.success = true, a.ttft = 0.1, a.latency = 0.7, a.output_len = 5, a.itl = {0.4, 0.2}, a.text_chunks = {"a b", "c"};
  Metrics m = calculate_metrics({{"p", 1, 5}}, {a}, 1.0, &tok, "sglang-oai", 2.5);
  EXPECT_NEAR(m.mean_itl_ms, (200 + 200 + 200) / 3.0, 1e-9);
  Metrics plain = calculate_metrics({{"p", 1, 5}}, {a}, 1.0, &tok, "sglang", 2.5);
  EXPECT_NEAR(plain.mean_itl_ms, 300, 1e-9);
}

TEST(BenchMetrics, AllFailed) {
  RequestOutput f;
  f.error = "x";
  Metrics m = calculate_metrics({{"p", 1, 5}}, {f}, 1.0, nullptr, "sglang", std::nullopt);
  EXPECT_EQ(m.completed, 0);
  EXPECT_DOUBLE_EQ(m.mean_ttft_ms, 0);  // "or 0"
  EXPECT_TRUE(std::isnan(m.mean_e2e_latency_ms));
  EXPECT_EQ(m.max_concurrent_requests, 0);
}

TEST(BenchReport, LayoutMatchesSglang) {
  ds::bench::testing::WordTokenizer tok;
  Metrics m = calculate_metrics(rows(), recorded(), 4.0, &tok, "sglang", std::nullopt);
  RunInfo run;
  run.backend = "sglang";
  run.request_rate = std::numeric_limits<double>::infinity();
  run.duration_s = 4.0;
  run.accept_length = 2.5;
  std::string r = format_report(run, m);
  EXPECT_EQ(r.rfind("\n============ Serving Benchmark Result ============\n", 0), 0u);
  for (const char* line : {
           "Backend:                                 sglang    \n",
           "Traffic request rate:                    inf       \n",
           "Max request concurrency:                 not set   \n",
           "Successful requests:                     2         \n",
           "Benchmark duration (s):                  4.00      \n",
           "Total generated tokens:                  6         \n",
           "Total generated tokens (retokenized):    6         \n",
           "Request throughput (req/s):              0.50      \n",
           "Peak output token throughput (tok/s):    4.00      \n",
           "Peak concurrent requests:                2         \n",
           "Concurrency:                             0.88      \n",
           "Accept length:                           2.50      \n",
           "----------------End-to-End Latency----------------\n",
           "---------------Time to First Token----------------\n",
           "-----Time per Output Token (excl. 1st token)------\n",
           "---------------Inter-Token Latency----------------\n",
           "Mean TTFT (ms):                          750.00    \n",
           "P99 ITL (ms):                            500.00    \n",
           "Max ITL (ms):                            500.00    \n",
       })
    EXPECT_NE(r.find(line), std::string::npos) << line;
  EXPECT_TRUE(r.ends_with("\n" + std::string(50, '=') + "\n"));
  EXPECT_EQ(py_float(16), "16.0");
  EXPECT_EQ(py_float(0.5), "0.5");
  run.request_rate = 16;
  run.max_concurrency = 8;
  run.accept_length.reset();
  r = format_report(run, m);
  EXPECT_NE(r.find("Traffic request rate:                    16.0      \n"), std::string::npos);
  EXPECT_NE(r.find("Max request concurrency:                 8         \n"), std::string::npos);
  EXPECT_EQ(r.find("Accept length"), std::string::npos);
}

TEST(BenchReport, JsonRecordHasMetricsAndDetails) {
  ds::bench::testing::WordTokenizer tok;
  auto out = recorded();
  Metrics m = calculate_metrics(rows(), out, 4.0, &tok, "sglang", std::nullopt);
  RunInfo run;
  run.backend = "sglang";
  run.request_rate = std::numeric_limits<double>::infinity();
  auto j = result_record(run, m, out, nullptr);
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["output_lens"], nlohmann::json({4, 2, 0}));
  EXPECT_EQ(j["errors"][2], "boom");
  EXPECT_EQ(j["itls"][0].size(), 3u);
  EXPECT_DOUBLE_EQ(j["p99_tpot_ms"].get<double>(), m.p99_tpot_ms);
}
