#include "router/router.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "bench/http_client.h"
#include "router/front.h"
#include "router/router_core.h"
#include "server/http_server.h"

namespace ds::router {

struct Router::Impl {
  bench::EventLoop loop;  // first: outlives the clients and exchanges that use it
  RouterCore core;
  std::unique_ptr<server::HttpServer> http;
  std::thread loop_thread;
  std::atomic<bool> stopping{false};
  bool stopped = false;

  explicit Impl(RouterOptions options) : core(std::move(options), loop) {}

  // Keeps the loop alive and runs the policy's eviction every --eviction-interval-secs.
  void tick(double since_eviction) {
    if (stopping) return;
    const double step = 0.5;
    since_eviction += step;
    if (since_eviction >= core.options.eviction_interval_secs) {
      core.policy->evict();
      since_eviction = 0;
    }
    loop.after(step, [this, since_eviction] { tick(since_eviction); });
  }
};

Router::Router(RouterOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  const RouterOptions& o = impl_->core.options;
  server::HttpServerOptions ho;
  ho.host = o.host;
  ho.port = uint16_t(o.port);
  ho.io_threads = o.io_threads;
  ho.max_body_bytes = o.max_payload_size;
  ho.max_connections = o.max_connections > 0 ? o.max_connections : server::default_connection_limit();
  Impl* impl = impl_.get();
  impl_->http = std::make_unique<server::HttpServer>(
      ho, [impl](server::HttpRequest&& req, std::shared_ptr<server::Responder> r) {
        handle_front_request(impl->core, std::move(req), std::move(r));
      });
}

Router::~Router() { stop(0); }

void Router::start() {
  impl_->http->listen();
  impl_->loop.post([impl = impl_.get()] {
    impl->core.health.start();
    impl->tick(0);
  });
  impl_->loop_thread = std::thread([impl = impl_.get()] {
    while (!impl->stopping) impl->loop.run();  // run() returns when idle; tick() keeps it busy
  });
  impl_->http->start();
}

uint16_t Router::port() const { return impl_->http->port(); }

void Router::stop(double grace_s) {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->http->stop(grace_s);  // client connections close: their upstream exchanges are cancelled
  if (impl_->loop_thread.joinable()) {
    // Let the cancellations reach the workers (their connections close) before the loop stops.
    impl_->loop.post([impl = impl_.get()] {
      impl->core.health.stop();
      impl->stopping = true;
      impl->loop.stop();  // pending timers (health checks) would keep run() going
    });
    impl_->loop_thread.join();
  }
  impl_->stopping = true;
}

}  // namespace ds::router
