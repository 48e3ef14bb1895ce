// The four policies of sglang_router's plain mode (make_policy picks one by name).
#pragma once
#include <random>

#include "router/approx_tree.h"
#include "router/policy.h"

namespace ds::router {

// Each worker in turn; workers that are not candidates are skipped.
class RoundRobinPolicy final : public Policy {
 public:
  explicit RoundRobinPolicy(size_t num_workers) : num_workers_(num_workers) {}
  const char* name() const override { return "round_robin"; }
  size_t select(const std::vector<Candidate>& candidates, std::string_view text) override;

 private:
  size_t num_workers_;
  size_t next_ = 0;
};

class RandomPolicy final : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed);
  const char* name() const override { return "random"; }
  size_t select(const std::vector<Candidate>& candidates, std::string_view text) override;

 private:
  std::mt19937_64 rng_;
};

// Two different candidates at random; the one with fewer requests in flight.
class PowerOfTwoPolicy final : public Policy {
 public:
  explicit PowerOfTwoPolicy(uint64_t seed);
  const char* name() const override { return "power_of_two"; }
  size_t select(const std::vector<Candidate>& candidates, std::string_view text) override;

 private:
  std::mt19937_64 rng_;
};

// SGLang's cache-aware routing: when the load is balanced, the worker whose tree matches the
// longest prefix of the text if that covers more than cache_threshold of it, else the worker with
// the smallest tree; when imbalanced (both balance thresholds exceeded), the least loaded worker.
// The text is then added to the chosen worker's tree.
class CacheAwarePolicy final : public Policy {
 public:
  CacheAwarePolicy(const PolicyConfig& config, size_t num_workers);
  const char* name() const override { return "cache_aware"; }
  size_t select(const std::vector<Candidate>& candidates, std::string_view text) override;
  void evict() override;
  void write_metrics(std::string& out, const std::vector<std::string>& worker_labels) const override;

  const ApproxTree& tree(size_t worker) const { return trees_[worker]; }
  uint64_t cache_hits() const { return hits_; }
  uint64_t cache_misses() const { return misses_; }
  uint64_t balancing_events() const { return balancing_; }

 private:
  PolicyConfig config_;
  std::vector<ApproxTree> trees_;
  uint64_t hits_ = 0, misses_ = 0, balancing_ = 0;
};

// Seeds from std::random_device when `seed` is 0.
uint64_t seed_or_random(uint64_t seed);

}  // namespace ds::router
