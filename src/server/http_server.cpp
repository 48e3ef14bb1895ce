// The only file of the server that includes Boost.Asio/Beast.
//
// One Connection per socket, all of its work on its own strand. A request is read with Beast's
// parser (header first: an oversized Content-Length is refused before the body is read, and
// "Expect: 100-continue" is answered), handed to the handler through a per-request Exchange, and
// answered by raw HTTP/1.1 bytes we write ourselves (Content-Length or chunked), so a stream is just
// a queue of strings. While a response is pending we wait for the socket to become readable: a
// readable socket with nothing to read means the client closed it, and the request is cancelled.
#include "server/http_server.h"

#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "server/api_error.h"
#include "server/http_framing.h"
#include "util/error.h"

namespace ds::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

asio::steady_timer::duration seconds(double s) {
  return std::chrono::duration_cast<asio::steady_timer::duration>(std::chrono::duration<double>(s));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool iequals(std::string_view a, std::string_view b) { return lower(a) == lower(b); }

std::string status_line(int status) {
  auto reason = http::obsolete_reason(static_cast<http::status>(status));
  return fmt::format("HTTP/1.1 {} {}\r\n", status, std::string_view(reason.data(), reason.size()));
}

// The transport's own refusals, in the API's error shape (server/api_error.h).
std::string plain_error(int status, const std::string& message) {
  std::string body = dump(error_body(status, message));
  return status_line(status) +
         fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
                     body.size(), status == 503 ? "Retry-After: 1\r\n" : "") +
         body;
}

class Connection;

}  // namespace

// Every Connection holds the Impl (so its io_context outlives every socket); stop() closes them all.
struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  std::atomic<size_t> connections{0};
  std::atomic<int> pending_responses{0};
  std::atomic<bool> stopping{false};
  std::atomic<int> running_threads{0};
  HttpServerOptions opt;
  RequestHandler handler;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor{io};
  std::vector<std::thread> threads;
  std::mutex stop_mu;
  bool stopped = false;
  std::mutex conn_mu;  // the open connections, to drop them at stop()
  std::unordered_map<Connection*, std::weak_ptr<Connection>> conns;
  // accept() failures (e.g. out of descriptors): retried after a growing pause, logged once per interval.
  asio::steady_timer accept_retry{io};
  std::chrono::milliseconds accept_pause{0};
  std::atomic<uint64_t> accept_failures{0};
  uint64_t failures_logged = 0;
  std::chrono::steady_clock::time_point last_failure_log{};

  Impl(HttpServerOptions o, RequestHandler h)
      : opt(std::move(o)), handler(std::move(h)), io(std::max(1, opt.io_threads)) {}
  void accept();
  void accept_failed(const error_code& ec);
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<HttpServer::Impl> srv, tcp::socket s)
      : srv_(std::move(srv)), sock_(std::move(s)), timer_(sock_.get_executor()) {
    ++srv_->connections;
  }
  ~Connection() {
    {
      std::lock_guard lock(srv_->conn_mu);
      srv_->conns.erase(this);
    }
    --srv_->connections;
  }

  void start() {
    {
      std::lock_guard lock(srv_->conn_mu);
      srv_->conns.emplace(this, weak_from_this());
    }
    read_header();
  }
  // Over the connection limit: a 503 and the connection closes.
  void start_refused(size_t limit) {
    {
      std::lock_guard lock(srv_->conn_mu);
      srv_->conns.emplace(this, weak_from_this());
    }
    // No drain: the descriptor is what is short. A client that already sent bytes may see a reset.
    refuse(503, fmt::format("too many open connections (the limit is {}); retry later", limit), false);
  }
  // At server stop: cancel what is pending (its disconnect callback runs) and close.
  void drop() { client_gone(); }
  const asio::any_io_executor& executor() { return exec_; }

  // Responder calls, already on the strand; `seq` tells a stale call (an earlier request's) apart.
  void respond(uint64_t seq, HttpResponse r) {
    if (!current(seq) || started_) return;
    started_ = true;
    std::string head = status_line(r.status);
    head += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n", r.content_type, r.body.size());
    finish_head(head, r.headers);
    queue(std::move(head) + r.body);
    end(seq);
  }
  void start_stream(uint64_t seq, int status, const std::string& type, const HeaderList& headers) {
    if (!current(seq) || started_) return;
    started_ = true;
    streaming_ = true;
    std::string head = status_line(status);
    head += fmt::format("Content-Type: {}\r\nCache-Control: no-cache\r\n", type);
    if (chunked_ok_) head += "Transfer-Encoding: chunked\r\n";
    else keep_alive_ = false;  // HTTP/1.0: the body ends when the connection does
    finish_head(head, headers);
    queue(std::move(head));
  }
  void send(uint64_t seq, std::string data) {
    if (!current(seq) || !streaming_ || finished_ || data.empty()) return;
    if (chunked_ok_) queue(fmt::format("{:x}\r\n", data.size()) + std::move(data) + "\r\n");
    else queue(std::move(data));
  }
  void end_stream(uint64_t seq) {
    if (!current(seq) || !streaming_ || finished_) return;
    if (chunked_ok_) queue("0\r\n\r\n");
    end(seq);
  }
  void on_disconnect(uint64_t seq, std::function<void()> fn) {
    if (seq != seq_) return;
    if (gone_) fn();
    else on_gone_ = std::move(fn);
  }

 private:
  bool current(uint64_t seq) const { return seq == seq_ && active_ && !gone_; }

  void finish_head(std::string& head, const HeaderList& extra) {
    for (const auto& [k, v] : extra) head += k + ": " + v + "\r\n";
    head += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  }

  // ------------------------------------------------------------ reading a request
  void read_header() {
    if (srv_->stopping) return close();
    parser_.emplace();
    parser_->body_limit(srv_->opt.max_body_bytes);
    parser_->header_limit(64 * 1024);
    arm_timer(srv_->opt.idle_timeout_s);
    http::async_read_header(sock_, buf_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (ec) return read_failed(ec);
    auto& req = parser_->get();
    // Request smuggling (RFC 9112 section 6.3): a length we cannot know for sure ends the connection.
    std::vector<std::string_view> te;
    for (const auto& f : req)
      if (f.name() == http::field::transfer_encoding) te.emplace_back(f.value().data(), f.value().size());
    if (auto bad = check_request_framing(te, req.count(http::field::content_length) > 0))
      return refuse(bad->status, bad->message);
    if (auto len = parser_->content_length(); len && *len > srv_->opt.max_body_bytes)
      return refuse(
          413, fmt::format("request body of {} bytes is over the limit of {} bytes", *len, srv_->opt.max_body_bytes));
    auto expect = req[http::field::expect];
    if (!expect.empty() && iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
      interim_ = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(sock_, asio::buffer(interim_), [self = shared_from_this()](error_code ec, size_t) {
        if (ec) return self->close();
        self->read_body();
      });
    }
    read_body();
  }

  void read_body() {
    http::async_read(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(error_code ec) {
    cancel_timer();
    if (ec) return read_failed(ec);
    auto msg = parser_->release();
    parser_.reset();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.path = req.target.substr(0, req.target.find('?'));
    for (const auto& f : msg)
      req.headers.emplace_back(lower(std::string_view(f.name_string().data(), f.name_string().size())),
                               std::string(f.value()));
    req.body = std::move(msg.body());
    keep_alive_ = msg.keep_alive();
    chunked_ok_ = msg.version() >= 11;
    begin_exchange(std::move(req));
  }

  void read_failed(error_code ec) {
    cancel_timer();
    if (ec == http::error::body_limit)
      return refuse(413, fmt::format("request body is over the limit of {} bytes", srv_->opt.max_body_bytes));
    if (ec == http::error::header_limit) return refuse(431, "request headers are too large");
    // Beast's own framing checks (e.g. chunked together with Content-Length): say which header it is.
    if (ec == http::error::bad_transfer_encoding)
      return refuse(400, "invalid Transfer-Encoding (chunked not last, or together with Content-Length)");
    if (ec == http::error::bad_content_length)
      return refuse(400, "invalid Content-Length (not a number, several values, or together with Transfer-Encoding)");
    if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return refuse(400, "malformed HTTP request");
    close();  // EOF, reset, timeout: nothing to answer
  }

  // An answer to a request we will not hand on; the connection closes after it. Unread bytes of the
  // client are drained for a moment first: closing with them unread would reset the connection and
  // could destroy the answer before the client reads it.
  void refuse(int status, const std::string& message, bool drain = true) {
    interim_ = plain_error(status, message);
    asio::async_write(sock_, asio::buffer(interim_), [self = shared_from_this(), drain](error_code ec, size_t) {
      if (ec || !drain) return self->close();
      error_code ignored;
      self->sock_.shutdown(tcp::socket::shutdown_send, ignored);
      self->arm_timer(2.0);
      self->drain_then_close();
    });
  }
  void drain_then_close() {
    buf_.consume(buf_.size());
    sock_.async_read_some(buf_.prepare(4096), [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->close();  // EOF (the client read our answer and closed), reset, or the timer
      self->drain_then_close();
    });
  }

  // ------------------------------------------------------------ one request/response exchange
  void begin_exchange(HttpRequest req);

  void end(uint64_t seq) {
    finished_ = true;
    if (!writing_) complete();
  }

  // The whole response is written.
  void complete() {
    active_ = false;
    on_gone_ = nullptr;
    --srv_->pending_responses;
    if (watching_) {
      watching_ = false;
      error_code ignored;
      sock_.cancel(ignored);
    }
    if (keep_alive_ && !srv_->stopping) return read_header();
    error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_send, ignored);
    close();
  }

  void watch_for_disconnect() {
    watching_ = true;
    sock_.async_wait(tcp::socket::wait_read, [self = shared_from_this(), seq = seq_](error_code ec) {
      if (seq != self->seq_ || !self->watching_ || !self->active_) return;
      if (ec) return self->client_gone();
      // Peek: 0 bytes = the peer closed; bytes = a pipelined request (keep it for later, stop
      // watching); nothing yet = a spurious wake-up (they happen), so wait again.
      char c;
      ssize_t n = ::recv(self->sock_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) {
        self->watching_ = false;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        self->watch_for_disconnect();
      } else {
        self->client_gone();
      }
    });
  }

  void client_gone() {
    if (gone_) return;
    gone_ = true;
    if (active_) {
      active_ = false;
      --srv_->pending_responses;
      if (auto fn = std::move(on_gone_)) {
        on_gone_ = nullptr;
        fn();
      }
    }
    close();
  }

  // ------------------------------------------------------------ writing
  void queue(std::string bytes) {
    out_ += bytes;
    if (!writing_) flush();
  }

  void flush() {
    writing_ = true;
    inflight_.swap(out_);
    out_.clear();
    arm_timer(srv_->opt.write_timeout_s);
    asio::async_write(sock_, asio::buffer(inflight_),
                      [self = shared_from_this()](error_code ec, size_t) { self->on_written(ec); });
  }

  void on_written(error_code ec) {
    writing_ = false;
    cancel_timer();
    inflight_.clear();
    if (ec) return client_gone();
    if (!out_.empty()) return flush();
    if (finished_ && active_) complete();
  }

  // ------------------------------------------------------------ timer, close
  void arm_timer(double s) {
    uint64_t gen = ++timer_gen_;
    timer_.expires_after(seconds(s));
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->timer_gen_) return;
      self->client_gone();
    });
  }
  void cancel_timer() {
    ++timer_gen_;
    timer_.cancel();
  }

  void close() {
    on_gone_ = nullptr;  // it may hold the request's job, which holds us
    cancel_timer();
    error_code ignored;
    sock_.close(ignored);
  }

  std::shared_ptr<HttpServer::Impl> srv_;
  tcp::socket sock_;
  asio::any_io_executor exec_ = sock_.get_executor();
  asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string interim_;         // 100 Continue / a refusal, kept alive while written
  std::string out_, inflight_;  // bytes queued / being written

  uint64_t seq_ = 0;      // the current exchange
  bool active_ = false;   // a request is being answered
  bool started_ = false;  // its head is queued
  bool streaming_ = false;
  bool finished_ = false;  // its last byte is queued
  bool writing_ = false;
  bool watching_ = false;
  bool gone_ = false;  // the client is gone (or we dropped it)
  bool keep_alive_ = true;
  bool chunked_ok_ = true;  // HTTP/1.1
  std::function<void()> on_gone_;
};

// The Responder of one exchange: forwards to the connection's strand, tagged with the exchange's number.
class Exchange : public Responder {
 public:
  Exchange(std::shared_ptr<Connection> c, uint64_t seq) : c_(std::move(c)), seq_(seq) {}
  void respond(HttpResponse r) override {
    run([c = c_, s = seq_, r = std::move(r)]() mutable { c->respond(s, std::move(r)); });
  }
  void start_stream(int status, std::string type, HeaderList headers) override {
    run([c = c_, s = seq_, status, type = std::move(type), h = std::move(headers)] {
      c->start_stream(s, status, type, h);
    });
  }
  void send(std::string data) override {
    run([c = c_, s = seq_, d = std::move(data)]() mutable { c->send(s, std::move(d)); });
  }
  void end_stream() override {
    run([c = c_, s = seq_] { c->end_stream(s); });
  }
  void on_disconnect(std::function<void()> fn) override {
    run([c = c_, s = seq_, fn = std::move(fn)]() mutable { c->on_disconnect(s, std::move(fn)); });
  }
  void post(std::function<void()> fn) override { asio::post(c_->executor(), std::move(fn)); }

 private:
  // Inline when already on the strand (the usual case: the handler or an output posted there).
  template <typename F>
  void run(F&& f) {
    asio::dispatch(c_->executor(), std::forward<F>(f));
  }
  std::shared_ptr<Connection> c_;
  uint64_t seq_;
};

void Connection::begin_exchange(HttpRequest req) {
  ++seq_;
  active_ = true;
  started_ = streaming_ = finished_ = false;
  on_gone_ = nullptr;
  ++srv_->pending_responses;
  watch_for_disconnect();
  auto ex = std::make_shared<Exchange>(shared_from_this(), seq_);
  try {
    srv_->handler(std::move(req), ex);
  } catch (const std::exception& e) {
    spdlog::error("request handler failed: {}", e.what());
    if (!started_) {
      HttpResponse r;
      r.status = 500;
      r.body = R"({"error":{"message":"internal server error","type":"server_error","param":null,"code":500}})";
      respond(seq_, std::move(r));
    }
  }
}

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [this](error_code ec, tcp::socket s) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open() || stopping) return;
      return accept_failed(ec);
    }
    accept_pause = std::chrono::milliseconds(0);
    error_code ignored;
    s.set_option(tcp::no_delay(true), ignored);
    auto c = std::make_shared<Connection>(shared_from_this(), std::move(s));
    // The new connection counts itself: more than the limit means this one is over it.
    if (opt.max_connections > 0 && connections > opt.max_connections) c->start_refused(opt.max_connections);
    else c->start();
    if (!stopping) accept();
  });
}

// Out of descriptors (EMFILE/ENFILE), memory, ...: the waiting connection stays in the backlog and
// the acceptor is readable at once again, so an immediate retry would spin. Pause (10 ms doubling to
// 1 s, reset by the next success) and log the first failure, then a count at most every 10 s.
void HttpServer::Impl::accept_failed(const error_code& ec) {
  const uint64_t n = ++accept_failures;
  const auto now = std::chrono::steady_clock::now();
  if (failures_logged == 0 || now - last_failure_log >= std::chrono::seconds(10)) {
    if (failures_logged == 0)
      spdlog::warn("accept failed: {} ({} connections open); retrying with back-off, repeats logged every 10 s",
                   ec.message(), connections.load());
    else
      spdlog::warn("accept failed {} times in the last interval: {} ({} connections open)", n - failures_logged,
                   ec.message(), connections.load());
    failures_logged = n;
    last_failure_log = now;
  }
  accept_pause = std::clamp(accept_pause * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  accept_retry.expires_after(accept_pause);
  accept_retry.async_wait([this](error_code e) {
    if (!e && !stopping) accept();
  });
}

HttpServer::HttpServer(HttpServerOptions options, RequestHandler handler)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() { stop(0); }

void HttpServer::listen() {
  auto& im = *impl_;
  if (im.acceptor.is_open()) return;
  error_code ec;
  auto addr = asio::ip::make_address(im.opt.host, ec);
  if (ec) {  // a host name: resolve it (e.g. "localhost")
    tcp::resolver res(im.io);
    auto results = res.resolve(im.opt.host, std::to_string(im.opt.port), ec);
    if (ec || results.empty()) fail("--host {}: cannot resolve ({})", im.opt.host, ec.message());
    addr = results.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, im.opt.port);
  im.acceptor.open(ep.protocol(), ec);
  if (!ec) im.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(ep, ec);
  if (!ec) im.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    im.acceptor.close(ignored);
    fail("cannot listen on {}:{}: {}", im.opt.host, im.opt.port, ec.message());
  }
}

void HttpServer::start() {
  listen();
  auto& im = *impl_;
  im.work.emplace(im.io.get_executor());
  im.accept();
  im.running_threads = std::max(1, im.opt.io_threads);
  for (int i = 0; i < std::max(1, im.opt.io_threads); ++i)
    im.threads.emplace_back([&im] {
      pthread_setname_np(pthread_self(), "dsserve-http");  // visible in top -H, perf, gdb
      for (;;) {
        try {
          im.io.run();
          --im.running_threads;
          return;
        } catch (const std::exception& e) {  // a bug in a handler must not take the server down
          spdlog::error("I/O thread: {}", e.what());
        }
      }
    });
}

uint16_t HttpServer::port() const {
  error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

size_t HttpServer::open_connections() const { return impl_->connections; }
uint64_t HttpServer::accept_failures() const { return impl_->accept_failures; }

void HttpServer::stop(double grace_s) {
  auto& im = *impl_;
  std::lock_guard lock(im.stop_mu);
  if (im.stopped) return;
  im.stopped = true;
  im.stopping = true;
  if (im.threads.empty()) return;
  asio::post(im.io, [&im] {
    error_code ignored;
    im.acceptor.close(ignored);
    im.accept_retry.cancel();
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  while (im.pending_responses > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(im.conn_mu);
    for (auto& [p, w] : im.conns)
      if (auto c = w.lock()) open.push_back(std::move(c));
  }
  for (auto& c : open) asio::post(c->executor(), [c] { c->drop(); });
  open.clear();
  // With every socket closed and no work guard, the threads run out of work and return; a
  // handler that keeps work alive past the deadline is cut off.
  im.work.reset();
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (im.running_threads > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  im.io.stop();
  for (auto& t : im.threads) t.join();
  im.threads.clear();
}

}  // namespace ds::server
