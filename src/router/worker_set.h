// The workers a router sends requests to (--worker-urls) and what it knows of each: health, load,
// counts for /metrics. PD disaggregation will keep two of these (prefill, decode).
// Not thread-safe: only the router's event-loop thread touches it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/http_client.h"
#include "router/policy.h"

namespace ds::router {

struct Worker {
  std::string url;  // as given on the command line, normalised to http://host:port[/prefix]
  bench::Url address;
  bool healthy = true;  // optimistic until the first health check says otherwise
  int failed_checks = 0, passed_checks = 0;  // consecutive
  size_t in_flight = 0;
  uint64_t routed = 0;   // attempts sent to it (a retried request counts on each worker it tried)
  uint64_t errors = 0;   // attempts that failed: no connection, 503, transport error, timeout
  uint64_t retries = 0;  // failed attempts of this worker that were retried on another
};

class WorkerSet {
 public:
  // Throws ds::Error on a bad or repeated URL, or on none.
  explicit WorkerSet(const std::vector<std::string>& urls);
  size_t size() const { return workers_.size(); }
  Worker& operator[](size_t i) { return workers_[i]; }
  const Worker& operator[](size_t i) const { return workers_[i]; }
  // The healthy workers not in `exclude`, with their load.
  std::vector<Candidate> candidates(const std::vector<size_t>& exclude = {}) const;
  size_t healthy_count() const;
  std::vector<std::string> labels() const;

 private:
  std::vector<Worker> workers_;
};

}  // namespace ds::router
