// The HTTP transport on a real loopback socket: keep-alive, body limits, 100-continue, chunked
// streaming from another thread, disconnect detection, malformed requests, many connections.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>

#include "server/http_framing.h"
#include "server/http_server.h"
#include "util/error.h"

namespace ds::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct TestServer {
  std::atomic<int> disconnects{0};
  std::atomic<int> handled{0};
  HttpServer server;

  explicit TestServer(size_t max_body = 1024, size_t max_connections = 0)
      : server(HttpServerOptions{"127.0.0.1", 0, 2, max_body, 5, 5, max_connections},
               [this](HttpRequest&& req, std::shared_ptr<Responder> r) {
                 ++handled;
                 if (req.path == "/echo") {
                   HttpResponse resp;
                   resp.content_type = "text/plain";
                   resp.body = req.method + " " + req.target + " " + req.body;
                   resp.headers.emplace_back("X-Test", "1");
                   r->respond(std::move(resp));
                 } else if (req.path == "/stream") {
                   r->start_stream(200, "text/event-stream");
                   std::thread([r] {  // outputs arrive from another thread, as from the engine
                     for (int i = 0; i < 3; ++i) {
                       std::this_thread::sleep_for(std::chrono::milliseconds(5));
                       r->send("data: " + std::to_string(i) + "\n\n");
                     }
                     r->end_stream();
                   })
                       .detach();
                 } else if (req.path == "/hang") {
                   r->on_disconnect([this] { ++disconnects; });
                 } else if (req.path == "/throw") {
                   throw std::runtime_error("boom");
                 } else {
                   HttpResponse resp;
                   resp.status = 404;
                   r->respond(std::move(resp));
                 }
               }) {
    server.start();
  }
  ~TestServer() { server.stop(1); }
  uint16_t port() const { return server.port(); }
};

struct Client {
  asio::io_context io;
  tcp::socket sock{io};
  beast::flat_buffer buf;
  explicit Client(uint16_t port) { sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)); }
  void write(const std::string& raw) { asio::write(sock, asio::buffer(raw)); }
  http::response<http::string_body> read() {
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    return res;
  }
  // True when the server closed the connection (reads EOF within a second).
  bool closed_by_peer() {
    sock.non_blocking(false);
    struct timeval tv {
      1, 0
    };
    setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    boost::system::error_code ec;
    size_t n = sock.read_some(asio::buffer(&c, 1), ec);
    return n == 0 && ec == asio::error::eof;
  }
};

TEST(ServerHttp, KeepAliveServesSeveralRequestsOnOneConnection) {
  TestServer s;
  Client c(s.port());
  for (int i = 0; i < 3; ++i) {
    c.write("POST /echo?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    auto res = c.read();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res.body(), "POST /echo?x=1 abc");
    EXPECT_EQ(res[http::field::content_type], "text/plain");
    EXPECT_EQ(res["X-Test"], "1");
    EXPECT_TRUE(res.keep_alive());
  }
  c.write("GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  auto res = c.read();
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(ServerHttp, OversizedBodiesGet413) {
  TestServer s(16);
  {
    Client c(s.port());
    c.write("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n");  // refused before the body
    auto res = c.read();
    EXPECT_EQ(res.result_int(), 413);
    EXPECT_NE(res.body().find("\"error\""), std::string::npos);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    Client c(s.port());  // chunked: found while reading
    c.write(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
        "chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n");
    EXPECT_EQ(c.read().result_int(), 413);
  }
  EXPECT_EQ(s.handled, 0);
}

// RFC 9112 section 6.3: a body whose length is not certain is refused and the connection closed, so
// nothing after it can be read as a next request (request smuggling).
TEST(ServerHttp, AmbiguousFramingIsRefusedAndClosesTheConnection) {
  TestServer s;
  struct Case {
    const char* headers;
    int status;
  };
  const Case cases[] = {
      {"Transfer-Encoding: gzip\r\n", 400},
      {"Transfer-Encoding: identity\r\n", 400},
      {"Transfer-Encoding: chunked, gzip\r\n", 400},
      {"Transfer-Encoding: gzip\r\nContent-Length: 48\r\n", 400},
      {"Transfer-Encoding: chunked\r\nContent-Length: 48\r\n", 400},
      {"Content-Length: 48\r\nTransfer-Encoding: chunked\r\n", 400},
      {"Transfer-Encoding: chunked, chunked\r\n", 400},
      {"Transfer-Encoding: gzip, chunked\r\n", 501},
      {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501},
  };
  for (const auto& c : cases) {
    Client cl(s.port());
    // The "body" is a whole second request: it must never be answered.
    cl.write(std::string("POST /echo HTTP/1.1\r\nHost: a\r\n") + c.headers +
             "\r\nGET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    auto res = cl.read();
    EXPECT_EQ(res.result_int(), c.status) << c.headers;
    EXPECT_FALSE(res.keep_alive()) << c.headers;
    EXPECT_NE(res.body().find("Transfer-Encoding"), std::string::npos) << res.body();
    EXPECT_TRUE(cl.closed_by_peer()) << c.headers;
  }
  EXPECT_EQ(s.handled, 0);
  // Plain chunked is fine, also in upper case and with a parameter-free list of one.
  Client cl(s.port());
  cl.write("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  auto res = cl.read();
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "POST /echo abc");
  EXPECT_TRUE(res.keep_alive());
}

TEST(ServerHttp, FramingRules) {
  using V = std::vector<std::string_view>;
  EXPECT_FALSE(check_request_framing({}, true));
  EXPECT_FALSE(check_request_framing({}, false));
  EXPECT_FALSE(check_request_framing(V{"chunked"}, false));
  EXPECT_FALSE(check_request_framing(V{" CHUNKED "}, false));
  EXPECT_FALSE(check_request_framing(V{"chunked;x=1"}, false));
  EXPECT_FALSE(check_request_framing(V{", chunked"}, false));
  EXPECT_EQ(check_request_framing(V{"chunked"}, true)->status, 400);
  EXPECT_EQ(check_request_framing(V{""}, false)->status, 400);
  EXPECT_EQ(check_request_framing(V{"gzip"}, false)->status, 400);
  EXPECT_EQ(check_request_framing(V{"chunked", "gzip"}, false)->status, 400);
  EXPECT_EQ(check_request_framing(V{"chunked", "chunked"}, false)->status, 400);
  EXPECT_EQ(check_request_framing(V{"deflate", "chunked"}, false)->status, 501);
}

TEST(ServerHttp, ExpectContinue) {
  TestServer s;
  Client c(s.port());
  c.write("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  std::string got(25, '\0');
  asio::read(c.sock, asio::buffer(got));
  EXPECT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
  c.write("hi");
  EXPECT_EQ(c.read().body(), "POST /echo hi");
}

TEST(ServerHttp, StreamsChunksFromAnotherThread) {
  TestServer s;
  Client c(s.port());
  for (int round = 0; round < 2; ++round) {  // and the connection stays usable
    c.write("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    auto res = c.read();
    EXPECT_EQ(res.result_int(), 200);
    EXPECT_EQ(res[http::field::transfer_encoding], "chunked");
    EXPECT_EQ(res[http::field::content_type], "text/event-stream");
    EXPECT_EQ(res.body(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  }
}

TEST(ServerHttp, Http10StreamEndsWithTheConnection) {
  TestServer s;
  Client c(s.port());
  c.write("GET /stream HTTP/1.0\r\n\r\n");
  std::string all;
  boost::system::error_code ec;
  asio::read(c.sock, asio::dynamic_buffer(all), ec);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_EQ(all.find("Transfer-Encoding"), std::string::npos);
  EXPECT_NE(all.find("\r\n\r\ndata: 0\n\ndata: 1\n\ndata: 2\n\n"), std::string::npos) << all;
}

TEST(ServerHttp, ClientThatGoesAwayIsNoticedWhileWaiting) {
  TestServer s;
  {
    Client c(s.port());
    c.write("GET /hang HTTP/1.1\r\nHost: a\r\n\r\n");
    while (s.handled == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(s.disconnects, 0);
  }  // closes the socket
  for (int i = 0; i < 500 && s.disconnects == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(s.disconnects, 1);
}

TEST(ServerHttp, MalformedRequestsAndHandlerErrors) {
  TestServer s;
  {
    Client c(s.port());
    c.write("THIS IS NOT HTTP\r\n\r\n");
    EXPECT_EQ(c.read().result_int(), 400);
  }
  {
    Client c(s.port());
    c.write("GET /throw HTTP/1.1\r\nHost: a\r\n\r\n");
    auto res = c.read();
    EXPECT_EQ(res.result_int(), 500);
    c.write("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");  // still serving
    EXPECT_EQ(c.read().result_int(), 200);
  }
}

TEST(ServerHttp, ManyConcurrentConnectionsOnTwoThreads) {
  TestServer s;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 200; ++i) {
    clients.push_back(std::make_unique<Client>(s.port()));
    clients.back()->write("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
  }
  for (auto& c : clients) EXPECT_EQ(c->read().body(), "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  clients.clear();
  for (int i = 0; i < 500 && s.server.open_connections() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(s.server.open_connections(), 0u);
}

TEST(ServerHttp, ConnectionsBeyondTheLimitGet503AndServiceResumes) {
  TestServer s(1024, 2);
  Client a(s.port()), b(s.port());
  for (Client* c : {&a, &b}) {  // both accepted and kept open
    c->write("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(c->read().result_int(), 200);
  }
  Client over(s.port());
  auto res = over.read();
  EXPECT_EQ(res.result_int(), 503);
  EXPECT_EQ(res["Retry-After"], "1");
  EXPECT_TRUE(over.closed_by_peer());
  EXPECT_EQ(s.handled, 2);
  a.sock.close();
  for (int i = 0; i < 500 && s.server.open_connections() > 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  Client again(s.port());
  again.write("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(again.read().result_int(), 200);
}

TEST(ServerHttp, PortInUseIsAClearError) {
  TestServer s;
  HttpServer other(HttpServerOptions{"127.0.0.1", s.port(), 1}, [](HttpRequest&&, std::shared_ptr<Responder>) {});
  try {
    other.start();
    FAIL() << "bound a port in use";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen"), std::string::npos);
  }
}

}  // namespace
}  // namespace ds::server
