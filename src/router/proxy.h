// Forwarding one request to a worker and its response back to the client, on the router's loop.
// Non-streaming responses are read whole, then answered with their status, content type and body
// unchanged; chunked (streaming) responses are forwarded piece by piece as they arrive. A worker
// that cannot be reached, answers 503 or fails before anything went to the client is retried on
// another worker (up to --retry-max-retries attempts); never once streaming began. A client that
// goes away cancels the upstream exchange (closes its connection: the worker aborts the request).
#pragma once
#include <memory>
#include <string>

#include "bench/http_client.h"
#include "server/http_types.h"

namespace ds::router {

struct RouterCore;

struct ProxyCall {
  std::string route;  // the path, the metrics label
  std::string method;
  std::string target;  // path + query, as the client sent it
  std::string body;
  bench::HttpHeaders headers;  // sent upstream
  std::string text;            // routing text (policy routes)
  bool by_policy = true;       // false: the first healthy worker (model and server info)
};

// Call on the loop thread.
void start_proxy(RouterCore& core, ProxyCall call, std::shared_ptr<server::Responder> responder);

}  // namespace ds::router
