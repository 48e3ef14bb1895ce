#include "server/api_server.h"

#include <spdlog/spdlog.h>

#include <ctime>
#include <string_view>

#include "server/api_error.h"
#include "server/api_key.h"
#include "server/endpoints.h"

namespace ds::server {
namespace {

struct Route {
  const char* path;
  const char* methods;  // space-separated
  EndpointFn fn;
  bool open;  // reachable without the API key (SGLang leaves health checks and metrics open)
};

constexpr Route kRoutes[] = {
    {"/v1/chat/completions", "POST", chat_completions, false},
    {"/v1/completions", "POST", completions, false},
    {"/v1/responses", "POST", responses, false},
    {"/generate", "POST", generate, false},
    {"/v1/models", "GET", list_models, false},
    {"/health", "GET POST", health, true},
    {"/health_generate", "GET POST", health_generate, true},
    {"/get_model_info", "GET", model_info, false},
    {"/get_server_info", "GET", server_info, false},
    {"/server_info", "GET", server_info, false},
    {"/flush_cache", "GET POST", flush_cache, false},
    {"/metrics", "GET", metrics, true},
    {"/v1/tokenize", "POST", tokenize, false},
    {"/tokenize", "POST", tokenize, false},
    {"/v1/detokenize", "POST", detokenize, false},
    {"/detokenize", "POST", detokenize, false},
    {"/abort_request", "POST", abort_request, false},
};

bool has_method(const char* methods, const std::string& m) {
  std::string_view all(methods);
  size_t pos = 0;
  while (pos <= all.size()) {
    size_t end = all.find(' ', pos);
    if (all.substr(pos, end - pos) == m) return true;
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return false;
}

}  // namespace

ApiServer::ApiServer(ServerConfig config, runtime::Engine& engine, const tok::Tokenizer& tokenizer,
                     std::unique_ptr<chat::ChatEncoder> encoder)
    : st_{std::move(config), engine, tokenizer, std::move(encoder), {}, {}, int64_t(std::time(nullptr))} {}

bool ApiServer::authorized(const HttpRequest& req) const {
  return !st_.config.api_key || bearer_matches(req, *st_.config.api_key);
}

void ApiServer::handle(HttpRequest&& req, std::shared_ptr<Responder> r) {
  try {
    const Route* route = nullptr;
    for (const auto& rt : kRoutes)
      if (req.path == rt.path) route = &rt;
    static constexpr Route model_route{"/v1/models/", "GET", get_model, false};
    if (!route && req.path.rfind("/v1/models/", 0) == 0) route = &model_route;
    if (!route) throw ApiError(404, "Not Found: " + req.path);
    if (!route->open && !authorized(req))
      throw ApiError(401,
                     req.header("authorization") ? "Incorrect API key provided."
                                                 : "Missing API key: send 'Authorization: Bearer <key>'.",
                     std::nullopt, "invalid_api_key");
    if (!has_method(route->methods, req.method)) {
      HttpResponse resp = error_response(405, "Method " + req.method + " not allowed on " + req.path);
      std::string allow = route->methods;
      for (char& c : allow)
        if (c == ' ') c = ',';
      resp.headers.emplace_back("Allow", allow);
      r->respond(std::move(resp));
      return;
    }
    const bool admits = route->fn == chat_completions || route->fn == completions || route->fn == generate ||
                        route->fn == health_generate || route->fn == health;
    if (admits && st_.draining) throw ApiError(503, "the server is shutting down");
    route->fn(st_, req, r);
  } catch (const ApiError& e) {
    if (e.status() >= 500) spdlog::warn("{} {}: {} {}", req.method, req.path, e.status(), e.what());
    else spdlog::debug("{} {}: {} {}", req.method, req.path, e.status(), e.what());
    r->respond(error_response(e));
  } catch (const Json::exception& e) {
    // Reading the client's JSON in a shape we did not expect: its error, not ours.
    spdlog::debug("{} {}: 400 {}", req.method, req.path, e.what());
    r->respond(error_response(400, std::string("invalid request body: ") + e.what()));
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", req.method, req.path, e.what());
    r->respond(error_response(500, std::string("internal error: ") + e.what()));
  }
}

}  // namespace ds::server
