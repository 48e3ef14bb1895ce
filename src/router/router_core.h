// What the router's requests share: the workers, the policy, one upstream client per worker, the
// health checker and the counters behind /metrics. Lives on the router's one event-loop thread:
// only code running there touches it (the front server's handlers post to the loop).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/http_client.h"
#include "router/health_checker.h"
#include "router/policy.h"
#include "router/router_options.h"
#include "router/worker_set.h"

namespace ds::router {

struct RouteStats {
  uint64_t requests = 0;
  uint64_t retries = 0;
  std::map<std::string, uint64_t> errors;  // by error_type
};

struct RouterCore {
  RouterCore(RouterOptions options, bench::EventLoop& loop);

  RouterOptions options;
  bench::EventLoop& loop;
  WorkerSet workers;
  std::unique_ptr<Policy> policy;
  std::vector<std::unique_ptr<bench::HttpClient>> clients;  // one per worker, same index
  HealthChecker health;
  std::map<std::string, RouteStats> routes;  // by path
  uint64_t client_disconnects = 0;
  // This router's random id. Every request it forwards carries the ids of the routers it passed through
  // (kRouterChainHeader, this one's last), so a request that comes back (a worker URL that points at this
  // router, or at a router in front of it) is answered 508 instead of looping until descriptors run out.
  std::string id;
};

inline constexpr const char* kRouterChainHeader = "x-dsserve-router-chain";

// The router's own Prometheus text (sglang_router's metric names where it has them).
std::string render_metrics(const RouterCore& core);

}  // namespace ds::router
