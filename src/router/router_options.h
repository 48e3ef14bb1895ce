// `dsserve router`'s settings: sglang_router's launch_router flags, names and defaults (see
// README.md, "Router", for the differences).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "router/health_checker.h"
#include "router/policy.h"

namespace ds::router {

struct RouterOptions {
  std::vector<std::string> worker_urls;
  std::string host = "127.0.0.1";
  int port = 30000;  // 0: any free port
  PolicyConfig policy;
  HealthOptions health;
  // Checked at the router when set (401 otherwise) and sent to the workers; when empty, the
  // client's Authorization header passes through.
  std::string api_key;
  double request_timeout_secs = 1800;  // one upstream exchange, streaming included
  int retry_max_retries = 5;           // attempts per request in all (sglang's meaning): 1 = no retry
  double eviction_interval_secs = 120;
  size_t max_payload_size = size_t(512) << 20;  // larger request bodies get 413
  int io_threads = 2;                           // the front server's I/O threads
  size_t max_connections = 0;                   // 0: from the open-file limit
  // --pd-disaggregation: worker_urls holds the prefill servers first (prefill_count of them, with their
  // bootstrap ports), then the decode servers; generation requests go to a pair (router/pd_proxy.h).
  bool pd_disaggregation = false;
  size_t prefill_count = 0;
  std::vector<int> bootstrap_ports;  // per prefill server
};

}  // namespace ds::router
