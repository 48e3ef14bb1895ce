// `dsserve router`: an HTTP front (the project's HttpServer) that spreads OpenAI and native
// requests over several `dsserve serve` workers (data-parallel replicas) by a policy, with health
// checks, retries and its own /metrics. All routing state lives on one event-loop thread, which
// also runs every upstream exchange (bench::HttpClient); the front's I/O threads only parse and post.
#pragma once
#include <cstdint>
#include <memory>

#include "router/router_options.h"

namespace ds::router {

class Router {
 public:
  explicit Router(RouterOptions options);  // throws ds::Error on bad options (URLs, policy)
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;
  void start();  // binds (throws ds::Error when it cannot), starts the loop and the front
  uint16_t port() const;
  // Stops accepting, gives open responses up to `grace_s`, then stops the loop. Idempotent.
  void stop(double grace_s = 2.0);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds::router
