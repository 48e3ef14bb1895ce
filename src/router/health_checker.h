// Periodic GET /health of every worker. A worker leaves the rotation after failure_threshold failed
// checks in a row, or at once when a request cannot reach it (worker_failed); it comes back after
// success_threshold passed checks in a row. Unhealthy workers are probed every second (at most
// every interval), healthy ones every interval. Runs on the router's event loop.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/http_client.h"

namespace ds::router {

class WorkerSet;

// sglang_router's --health-* flags and defaults.
struct HealthOptions {
  double interval_secs = 60;
  double timeout_secs = 5;
  int failure_threshold = 3;
  int success_threshold = 2;
  std::string endpoint = "/health";
};

class HealthChecker {
 public:
  HealthChecker(bench::EventLoop& loop, WorkerSet& workers, std::vector<std::unique_ptr<bench::HttpClient>>& clients,
                HealthOptions options);
  void start();                  // the first round now
  void worker_failed(size_t i);  // a request could not reach worker i
  void stop() { stopped_ = true; }

 private:
  void schedule(size_t i, double after_s);
  void probe(size_t i, uint64_t generation);
  void record(size_t i, bool ok, const std::string& why);

  bench::EventLoop& loop_;
  WorkerSet& workers_;
  std::vector<std::unique_ptr<bench::HttpClient>>& clients_;
  HealthOptions opt_;
  std::vector<uint64_t> generation_;  // a newer schedule() supersedes the chain of probes before it
  bool stopped_ = false;
};

}  // namespace ds::router
