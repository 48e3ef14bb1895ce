#include "router/worker_set.h"

#include <algorithm>

#include "util/error.h"

namespace ds::router {

WorkerSet::WorkerSet(const std::vector<std::string>& urls) {
  DS_CHECK(!urls.empty(), "no workers: give --worker-urls URL [URL ...]");
  for (const auto& u : urls) {
    Worker w;
    w.address = bench::Url::parse(u);
    w.url = w.address.str();
    for (const auto& other : workers_) DS_CHECK(other.url != w.url, "worker {} is listed twice", w.url);
    workers_.push_back(std::move(w));
  }
}

std::vector<Candidate> WorkerSet::candidates(const std::vector<size_t>& exclude) const {
  std::vector<Candidate> out;
  for (size_t i = 0; i < workers_.size(); ++i)
    if (workers_[i].healthy && std::find(exclude.begin(), exclude.end(), i) == exclude.end())
      out.push_back({i, workers_[i].in_flight});
  return out;
}

size_t WorkerSet::healthy_count() const {
  return size_t(std::count_if(workers_.begin(), workers_.end(), [](const Worker& w) { return w.healthy; }));
}

std::vector<std::string> WorkerSet::labels() const {
  std::vector<std::string> out;
  for (const auto& w : workers_) out.push_back(w.url);
  return out;
}

}  // namespace ds::router
