// round_robin, random and power_of_two: no state beyond a counter or a generator.
#include <algorithm>

#include "router/policies.h"
#include "util/error.h"

namespace ds::router {

uint64_t seed_or_random(uint64_t seed) {
  if (seed != 0) return seed;
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

size_t RoundRobinPolicy::select(const std::vector<Candidate>& candidates, std::string_view) {
  DS_CHECK(!candidates.empty(), "no candidate worker");
  for (size_t k = 0; k < num_workers_; ++k) {
    const size_t w = (next_ + k) % num_workers_;
    if (std::any_of(candidates.begin(), candidates.end(), [w](const Candidate& c) { return c.worker == w; })) {
      next_ = w + 1;
      return w;
    }
  }
  return candidates.front().worker;
}

RandomPolicy::RandomPolicy(uint64_t seed) : rng_(seed_or_random(seed)) {}

size_t RandomPolicy::select(const std::vector<Candidate>& candidates, std::string_view) {
  DS_CHECK(!candidates.empty(), "no candidate worker");
  return candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng_)].worker;
}

PowerOfTwoPolicy::PowerOfTwoPolicy(uint64_t seed) : rng_(seed_or_random(seed)) {}

size_t PowerOfTwoPolicy::select(const std::vector<Candidate>& candidates, std::string_view) {
  DS_CHECK(!candidates.empty(), "no candidate worker");
  if (candidates.size() == 1) return candidates[0].worker;
  const size_t a = std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng_);
  size_t b = std::uniform_int_distribution<size_t>(0, candidates.size() - 2)(rng_);
  if (b >= a) ++b;  // a different one
  return candidates[b].load < candidates[a].load ? candidates[b].worker : candidates[a].worker;
}

std::unique_ptr<Policy> make_policy(const PolicyConfig& config, size_t num_workers) {
  if (config.name == "round_robin") return std::make_unique<RoundRobinPolicy>(num_workers);
  if (config.name == "random") return std::make_unique<RandomPolicy>(config.seed);
  if (config.name == "power_of_two") return std::make_unique<PowerOfTwoPolicy>(config.seed);
  if (config.name == "cache_aware") return std::make_unique<CacheAwarePolicy>(config, num_workers);
  fail("unknown routing policy '{}' (round_robin, random, cache_aware, power_of_two)", config.name);
}

}  // namespace ds::router
