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
};

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

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ds::server
