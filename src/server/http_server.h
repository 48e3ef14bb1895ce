// The HTTP/1.1 transport (Boost.Beast over Asio): a fixed pool of I/O threads serving every
// connection asynchronously (never a thread per connection), keep-alive, chunked streaming, a
// request body limit (413), and disconnect detection while a response is pending.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "server/http_types.h"

namespace ds::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 30000;  // 0: any free port (see HttpServer::port)
  int io_threads = 2;
  size_t max_body_bytes = 64u << 20;  // larger request bodies get 413
  double idle_timeout_s = 75;         // a keep-alive connection with no request is closed after this
  double write_timeout_s = 120;       // a client that does not take our bytes for this long is dropped
  // Open connections beyond this are answered 503 and closed at once (uvicorn's --limit-concurrency);
  // 0: no limit. serve derives its default from the open-file limit (default_connection_limit).
  size_t max_connections = 0;
};

// The --limit-concurrency default: what the open-file limit leaves after the descriptors open now and
// a reserve for the process's other files. Raises the soft limit to the hard one first (as Go's
// runtime does): sockets are the server's main use of descriptors.
size_t default_connection_limit();

class HttpServer {
 public:
  // `handler` runs on an I/O thread and must not block; it answers through its Responder.
  HttpServer(HttpServerOptions options, RequestHandler handler);
  ~HttpServer();
  // Binds the address (throws ds::Error when it cannot); start() does it when not done yet.
  void listen();
  // Starts accepting on the I/O threads.
  void start();
  uint16_t port() const;  // the bound port (after listen)
  // Stops accepting, gives open responses up to `grace_s` to complete, then closes every
  // connection and joins the threads. Idempotent.
  void stop(double grace_s = 2.0);
  size_t open_connections() const;
  uint64_t accept_failures() const;  // accept() errors so far (out of descriptors, ...): retried with back-off

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ds::server
