#include "router/router_core.h"

#include <fmt/format.h>

#include <random>

namespace ds::router {

RouterCore::RouterCore(RouterOptions opts, bench::EventLoop& lp)
    : options(std::move(opts)),
      loop(lp),
      workers(options.worker_urls),
      policy(make_policy(options.policy, workers.size())),
      health(loop, workers, clients, options.health) {
  for (size_t i = 0; i < workers.size(); ++i) {
    clients.push_back(std::make_unique<bench::HttpClient>(loop, workers[i].address));
    clients.back()->clear_headers();  // not the bench client's key from the environment
  }
  std::random_device rd;
  id = fmt::format("{:08x}{:08x}", rd(), rd());
}

namespace {
void family(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}
}  // namespace

std::string render_metrics(const RouterCore& core) {
  std::string out;
  const auto& ws = core.workers;
  family(out, "sgl_router_requests_total", "counter", "Requests received, by route");
  for (const auto& [route, s] : core.routes) out += fmt::format("sgl_router_requests_total{{route=\"{}\"}} {}\n", route, s.requests);
  family(out, "sgl_router_retries_total", "counter", "Attempts retried on another worker, by route");
  for (const auto& [route, s] : core.routes) out += fmt::format("sgl_router_retries_total{{route=\"{}\"}} {}\n", route, s.retries);
  family(out, "sgl_router_request_errors_total", "counter", "Requests that failed at the router, by route and error type");
  for (const auto& [route, s] : core.routes)
    for (const auto& [type, n] : s.errors)
      out += fmt::format("sgl_router_request_errors_total{{route=\"{}\",error_type=\"{}\"}} {}\n", route, type, n);
  family(out, "sgl_router_client_disconnects_total", "counter", "Requests whose client went away before the response ended");
  out += fmt::format("sgl_router_client_disconnects_total {}\n", core.client_disconnects);
  family(out, "sgl_router_active_workers", "gauge", "Workers in rotation (healthy)");
  out += fmt::format("sgl_router_active_workers {}\n", ws.healthy_count());
  family(out, "sgl_router_worker_health", "gauge", "Worker health (1 healthy, 0 out of rotation)");
  for (size_t i = 0; i < ws.size(); ++i) out += fmt::format("sgl_router_worker_health{{worker=\"{}\"}} {}\n", ws[i].url, ws[i].healthy ? 1 : 0);
  family(out, "sgl_router_processed_requests_total", "counter", "Attempts routed to each worker");
  for (size_t i = 0; i < ws.size(); ++i) out += fmt::format("sgl_router_processed_requests_total{{worker=\"{}\"}} {}\n", ws[i].url, ws[i].routed);
  family(out, "sgl_router_running_requests", "gauge", "Requests in flight on each worker");
  for (size_t i = 0; i < ws.size(); ++i) out += fmt::format("sgl_router_running_requests{{worker=\"{}\"}} {}\n", ws[i].url, ws[i].in_flight);
  family(out, "sgl_router_worker_errors_total", "counter", "Failed attempts on each worker (no connection, 503, transport error, timeout)");
  for (size_t i = 0; i < ws.size(); ++i) out += fmt::format("sgl_router_worker_errors_total{{worker=\"{}\"}} {}\n", ws[i].url, ws[i].errors);
  family(out, "sgl_router_worker_retries_total", "counter", "Failed attempts on each worker that were retried on another");
  for (size_t i = 0; i < ws.size(); ++i) out += fmt::format("sgl_router_worker_retries_total{{worker=\"{}\"}} {}\n", ws[i].url, ws[i].retries);
  core.policy->write_metrics(out, ws.labels());
  return out;
}

}  // namespace ds::router
