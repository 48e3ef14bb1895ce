#include <fmt/format.h>

#include <algorithm>

#include "router/policies.h"
#include "util/error.h"

namespace ds::router {

CacheAwarePolicy::CacheAwarePolicy(const PolicyConfig& config, size_t num_workers)
    : config_(config), trees_(num_workers) {}

size_t CacheAwarePolicy::select(const std::vector<Candidate>& candidates, std::string_view text) {
  DS_CHECK(!candidates.empty(), "no candidate worker");
  auto by_load = [](const Candidate& a, const Candidate& b) { return a.load < b.load; };
  const Candidate& least = *std::min_element(candidates.begin(), candidates.end(), by_load);
  const size_t max_load = std::max_element(candidates.begin(), candidates.end(), by_load)->load;
  const size_t min_load = least.load;
  const bool imbalanced = max_load - min_load > config_.balance_abs_threshold &&
                          double(max_load) > double(min_load) * config_.balance_rel_threshold;
  size_t chosen;
  if (imbalanced) {
    ++balancing_;
    chosen = least.worker;
  } else {
    // The longest match; among equal matches the less loaded worker (then the first).
    const Candidate* best = &candidates[0];
    size_t best_match = trees_[best->worker].match(text);
    for (const Candidate& c : candidates) {
      const size_t m = trees_[c.worker].match(text);
      if (m > best_match || (m == best_match && c.load < best->load)) best = &c, best_match = m;
    }
    const double rate = text.empty() ? 0.0 : double(best_match) / double(text.size());
    if (rate > config_.cache_threshold) {
      ++hits_;
      chosen = best->worker;
    } else {
      // Nothing cached to speak of: the worker with the least cached text, to spread the prefixes.
      ++misses_;
      const Candidate* smallest = &candidates[0];
      for (const Candidate& c : candidates) {
        const size_t s = trees_[c.worker].size(), s0 = trees_[smallest->worker].size();
        if (s < s0 || (s == s0 && c.load < smallest->load)) smallest = &c;
      }
      chosen = smallest->worker;
    }
  }
  trees_[chosen].insert(text);
  return chosen;
}

void CacheAwarePolicy::evict() {
  for (auto& t : trees_) t.evict_to(config_.max_tree_size);
}

void CacheAwarePolicy::write_metrics(std::string& out, const std::vector<std::string>& labels) const {
  out += "# HELP sgl_router_cache_hits_total Requests routed to the worker with a prefix match over cache_threshold\n";
  out += "# TYPE sgl_router_cache_hits_total counter\n";
  out += fmt::format("sgl_router_cache_hits_total {}\n", hits_);
  out += "# HELP sgl_router_cache_misses_total Requests routed to the smallest tree (no prefix match over cache_threshold)\n";
  out += "# TYPE sgl_router_cache_misses_total counter\n";
  out += fmt::format("sgl_router_cache_misses_total {}\n", misses_);
  out += "# HELP sgl_router_load_balancing_events_total Requests routed by load because the load was imbalanced\n";
  out += "# TYPE sgl_router_load_balancing_events_total counter\n";
  out += fmt::format("sgl_router_load_balancing_events_total {}\n", balancing_);
  out += "# HELP sgl_router_tree_size Bytes of request text in the worker's approximate tree\n";
  out += "# TYPE sgl_router_tree_size gauge\n";
  for (size_t i = 0; i < trees_.size() && i < labels.size(); ++i)
    out += fmt::format("sgl_router_tree_size{{worker=\"{}\"}} {}\n", labels[i], trees_[i].size());
}

}  // namespace ds::router
