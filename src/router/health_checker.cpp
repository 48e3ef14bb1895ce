#include "router/health_checker.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "router/worker_set.h"

namespace ds::router {

HealthChecker::HealthChecker(bench::EventLoop& loop, WorkerSet& workers,
                             std::vector<std::unique_ptr<bench::HttpClient>>& clients, HealthOptions options)
    : loop_(loop), workers_(workers), clients_(clients), opt_(std::move(options)), generation_(workers.size(), 0) {}

void HealthChecker::start() {
  for (size_t i = 0; i < workers_.size(); ++i) schedule(i, 0);
}

void HealthChecker::worker_failed(size_t i) {
  Worker& w = workers_[i];
  w.passed_checks = 0;
  if (!w.healthy) return;
  w.healthy = false;
  spdlog::warn("worker {} is out of rotation: a request could not reach it", w.url);
  schedule(i, std::min(1.0, opt_.interval_secs));
}

void HealthChecker::schedule(size_t i, double after_s) {
  const uint64_t gen = ++generation_[i];
  loop_.after(after_s, [this, i, gen] { probe(i, gen); });
}

void HealthChecker::probe(size_t i, uint64_t gen) {
  if (stopped_ || gen != generation_[i]) return;
  auto status = std::make_shared<int>(0);
  bench::HttpCallbacks cb;
  cb.on_headers = [status](int s, std::string_view) { *status = s; };
  cb.on_done = [this, i, gen, status](const std::string& error) {
    if (stopped_) return;
    const bool ok = error.empty() && *status == 200;
    record(i, ok, !error.empty() ? error : "HTTP " + std::to_string(*status));
    if (gen != generation_[i]) return;  // worker_failed() started a new chain meanwhile
    schedule(i, workers_[i].healthy ? opt_.interval_secs : std::min(1.0, opt_.interval_secs));
  };
  bench::HttpRequestOptions ro;
  ro.timeout_s = opt_.timeout_secs;
  clients_[i]->request("GET", opt_.endpoint, "", std::move(cb), ro);
}

void HealthChecker::record(size_t i, bool ok, const std::string& why) {
  Worker& w = workers_[i];
  if (ok) {
    w.failed_checks = 0;
    ++w.passed_checks;
    if (!w.healthy && w.passed_checks >= opt_.success_threshold) {
      w.healthy = true;
      spdlog::info("worker {} is healthy again", w.url);
    }
  } else {
    w.passed_checks = 0;
    ++w.failed_checks;
    if (w.healthy && w.failed_checks >= opt_.failure_threshold) {
      w.healthy = false;
      spdlog::warn("worker {} is out of rotation: {} failed health checks ({})", w.url, w.failed_checks, why);
    } else if (w.failed_checks == 1) {
      spdlog::debug("worker {}: health check failed ({})", w.url, why);
    }
  }
}

}  // namespace ds::router
