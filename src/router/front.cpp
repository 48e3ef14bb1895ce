#include "router/front.h"

#include <string_view>

#include "router/pd_proxy.h"
#include "router/proxy.h"
#include "router/router_core.h"
#include "router/routing_text.h"
#include "server/api_error.h"
#include "server/api_key.h"
#include "server/json.h"

namespace ds::router {
namespace {

enum class Kind { ByPolicy, FirstHealthy, Health, Metrics };

struct Route {
  const char* path;
  const char* method;
  Kind kind;
  bool open;  // reachable without the API key (as in `dsserve serve`)
};

constexpr Route kRoutes[] = {
    {"/v1/chat/completions", "POST", Kind::ByPolicy, false},
    {"/v1/completions", "POST", Kind::ByPolicy, false},
    {"/generate", "POST", Kind::ByPolicy, false},
    {"/v1/responses", "POST", Kind::ByPolicy, false},
    {"/v1/models", "GET", Kind::FirstHealthy, false},
    {"/get_model_info", "GET", Kind::FirstHealthy, false},
    {"/get_server_info", "GET", Kind::FirstHealthy, false},
    {"/server_info", "GET", Kind::FirstHealthy, false},
    {"/health_generate", "GET", Kind::FirstHealthy, true},
    {"/health", "GET", Kind::Health, true},
    {"/metrics", "GET", Kind::Metrics, true},
};

const Route* find_route(const std::string& path) {
  for (const auto& r : kRoutes)
    if (path == r.path) return &r;
  static constexpr Route model{"/v1/models/", "GET", Kind::FirstHealthy, false};
  if (path.starts_with("/v1/models/")) return &model;
  return nullptr;
}

// What goes upstream of the client's headers: the body's type, the key (the router's own when it
// enforces one), and what identifies the request.
bench::HttpHeaders upstream_headers(const RouterCore& core, const server::HttpRequest& req) {
  bench::HttpHeaders h;
  h.emplace_back("User-Agent", "dsserve-router");
  for (const auto& [k, v] : req.headers)
    if (k == "content-type" || k == "accept" || k == "x-request-id" || (k == "authorization" && core.options.api_key.empty()))
      h.emplace_back(k, v);
  if (!core.options.api_key.empty()) h.emplace_back("Authorization", "Bearer " + core.options.api_key);
  const std::string* chain = req.header(kRouterChainHeader);
  h.emplace_back(kRouterChainHeader, chain && !chain->empty() ? *chain + "," + core.id : core.id);
  return h;
}

// Whether this router's id is in the request's chain: it forwarded the request itself.
bool came_back(const RouterCore& core, const server::HttpRequest& req) {
  const std::string* chain = req.header(kRouterChainHeader);
  if (!chain) return false;
  for (size_t b = 0; b <= chain->size();) {
    const size_t e = std::min(chain->find(',', b), chain->size());
    if (std::string_view(*chain).substr(b, e - b) == core.id) return true;
    b = e + 1;
  }
  return false;
}

void answer_health(RouterCore& core, const std::shared_ptr<server::Responder>& r) {
  const size_t healthy = core.workers.healthy_count();
  if (healthy == 0) {
    r->respond(server::error_response(503, fmt::format("no healthy worker (of {})", core.workers.size())));
    return;
  }
  server::Json j{{"status", "ok"}, {"healthy_workers", healthy}, {"workers", core.workers.size()}};
  r->respond({200, "application/json", server::dump(j), {}});
}

}  // namespace

void handle_front_request(RouterCore& core, server::HttpRequest&& req, std::shared_ptr<server::Responder> r) {
  const Route* route = find_route(req.path);
  if (!route) return r->respond(server::error_response(404, "Not Found: " + req.path));
  if (came_back(core, req))
    return r->respond(server::error_response(
        508, "the router received a request it had forwarded itself: one of its worker URLs points back at this "
             "router (or at a router in front of it)"));
  if (!route->open && !core.options.api_key.empty() && !server::bearer_matches(req, core.options.api_key)) {
    return r->respond(server::error_response(server::ApiError(
        401, req.header("authorization") ? "Incorrect API key provided." : "Missing API key: send 'Authorization: Bearer <key>'.",
        std::nullopt, "invalid_api_key")));
  }
  if (req.method != route->method) {
    server::HttpResponse resp = server::error_response(405, "Method " + req.method + " not allowed on " + req.path);
    resp.headers.emplace_back("Allow", route->method);
    return r->respond(std::move(resp));
  }
  switch (route->kind) {
    case Kind::Health:
      core.loop.post([&core, r] { answer_health(core, r); });
      return;
    case Kind::Metrics:
      core.loop.post([&core, r] { r->respond({200, "text/plain; version=0.0.4", render_metrics(core), {}}); });
      return;
    case Kind::ByPolicy:
    case Kind::FirstHealthy:
      break;
  }
  ProxyCall call;
  call.route = route->kind == Kind::FirstHealthy && req.path.starts_with("/v1/models/") ? "/v1/models/{model}" : req.path;
  call.method = req.method;
  call.target = req.target;
  call.headers = upstream_headers(core, req);
  call.by_policy = route->kind == Kind::ByPolicy;
  // Parsed here, on the I/O thread, to keep the loop free for streaming.
  if (call.by_policy && core.options.policy.name == "cache_aware") call.text = routing_text(req.path, req.body);
  call.body = std::move(req.body);
  if (core.options.pd_disaggregation && call.by_policy)
    core.loop.post([&core, call = std::move(call), r]() mutable { start_pd_proxy(core, std::move(call), r); });
  else
    core.loop.post([&core, call = std::move(call), r]() mutable { start_proxy(core, std::move(call), r); });
}

}  // namespace ds::router
