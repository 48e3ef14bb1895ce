// What `dsserve serve` does on SIGTERM/SIGINT: stop admitting at once, let running requests finish
// for up to --shutdown-timeout seconds, abort the rest, flush the responses, exit in bounded time.
#pragma once

namespace ds::runtime {
class Engine;
}
namespace ds::server {
class ApiServer;
class HttpServer;
}  // namespace ds::server

namespace ds::cli {

// Returns once everything is stopped; the exit status to use (0, or 1 when the engine did not stop
// within its bound and the process must end without unwinding: see the .cpp).
int shut_down_server(server::ApiServer& api, runtime::Engine& engine, server::HttpServer& http, double drain_s);

}  // namespace ds::cli
