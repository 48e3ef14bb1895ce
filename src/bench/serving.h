// Runs the serving benchmark's traffic: warmup, Poisson (or all-at-once) arrivals, an optional
// concurrency cap, one request function per backend; all on one thread (see http_client.h).
#pragma once
#include <nlohmann/json.hpp>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/http_client.h"
#include "bench/protocol.h"
#include "bench/types.h"

namespace ds::bench {

struct ServingOptions {
  std::string backend = "sglang";
  Url url;
  std::string model;
  double request_rate = std::numeric_limits<double>::infinity();// requests/s; inf = all at time 0
  int max_concurrency = 0;          // 0 = unlimited
  int warmup_requests = 1;
  RequestOptions request;
  bool progress = true;
};

struct ServingRun {
  std::vector<RequestOutput> outputs;  // in dataset order
  double duration_s = 0;
  std::optional<double> accept_length;  // /get_server_info's avg_spec_accept_length (sglang backends)
  nlohmann::json server_info;           // null when not available
  uint64_t connections = 0;
};

// Seconds on a monotonic clock (time.perf_counter's role).
double now_seconds();

// Asks GET /v1/models for the first model id (used when --model is not given).
std::string fetch_model_id(const Url& url);

ServingRun run_serving(const std::vector<DatasetRow>& rows, const ServingOptions& opt, std::mt19937_64& rng);

}  // namespace ds::bench
