// How the router picks a worker for a request (sglang_router's --policy). A Policy sees only the
// candidates (the healthy workers not tried yet for this request) and their load; the WorkerSet
// owns the workers. PD disaggregation will hold one Policy per worker set (prefill, decode).
// Policies are not thread-safe: the router calls them on its one event-loop thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ds::router {

struct Candidate {
  size_t worker;  // index in the WorkerSet
  size_t load;    // requests in flight at the router on that worker
};

// sglang_router's flags and defaults (launch_router / router_args.py).
struct PolicyConfig {
  std::string name = "cache_aware";  // round_robin | random | cache_aware | power_of_two
  double cache_threshold = 0.3;      // cache_aware: route by prefix when matched/text > this
  size_t balance_abs_threshold = 64;  // cache_aware: imbalanced when max-min load > this ...
  double balance_rel_threshold = 1.5;  // ... and max load > min load * this: then least load
  size_t max_tree_size = size_t(1) << 26;  // cache_aware: bytes per worker tree kept by eviction
  uint64_t seed = 0;                 // random / power_of_two; 0: from std::random_device
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual const char* name() const = 0;
  // The chosen worker (a Candidate::worker); `candidates` is never empty. `text` is the request's
  // routing text (the prompt; empty for requests without one).
  virtual size_t select(const std::vector<Candidate>& candidates, std::string_view text) = 0;
  // Periodic upkeep, every --eviction-interval-secs (cache_aware trims its trees).
  virtual void evict() {}
  // The policy's own Prometheus lines (cache hits/misses, tree sizes); `worker_label(i)` names worker i.
  virtual void write_metrics(std::string& out, const std::vector<std::string>& worker_labels) const {}
};

// `num_workers`: the size of the WorkerSet the indices refer to. Throws ds::Error on an unknown name.
std::unique_ptr<Policy> make_policy(const PolicyConfig& config, size_t num_workers);

}  // namespace ds::router
