// The router's HTTP endpoints: which requests go to a worker by the policy (generation), which to
// the first healthy worker (model and server info), and what the router answers itself (/health,
// /metrics, 401/404/405). Runs on the front server's I/O threads and hands work to the loop.
#pragma once
#include <memory>

#include "server/http_types.h"

namespace ds::router {

struct RouterCore;

void handle_front_request(RouterCore& core, server::HttpRequest&& request, std::shared_ptr<server::Responder> r);

}  // namespace ds::router
