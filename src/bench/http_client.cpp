// The only file of the client that includes Boost.Asio/Beast.
#include "bench/http_client.h"

#include <sys/resource.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <optional>

#include "util/error.h"

namespace ds::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// ---------------------------------------------------------------- Url

Url Url::parse(const std::string& text) {
  std::string rest = text;
  if (rest.starts_with("https://")) fail("'{}': https is not supported by the benchmark client; use http://", text);
  if (rest.starts_with("http://")) rest = rest.substr(7);
  Url u;
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) u.prefix = rest.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  size_t colon = hostport.rfind(':');
  if (colon != std::string::npos && hostport.find(']') == std::string::npos) {
    u.host = hostport.substr(0, colon);
    int port = std::atoi(hostport.substr(colon + 1).c_str());
    DS_CHECK(port > 0 && port < 65536, "'{}': bad port", text);
    u.port = static_cast<uint16_t>(port);
  } else {
    u.host = hostport;
  }
  DS_CHECK(!u.host.empty(), "'{}': no host in URL", text);
  return u;
}

Url Url::from_flags(const std::string& base_url, const std::string& host, int port) {
  if (!base_url.empty()) return parse(base_url);
  return parse(fmt::format("{}:{}", host, port));
}

std::string Url::str() const { return fmt::format("http://{}:{}{}", host, port, prefix); }

// ---------------------------------------------------------------- EventLoop

struct EventLoop::Impl {
  asio::io_context io{1};  // concurrency hint 1: no locking inside Asio
};

EventLoop::EventLoop() : impl_(std::make_unique<Impl>()) {}
EventLoop::~EventLoop() = default;

void EventLoop::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

void EventLoop::after(double seconds, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io);
  timer->expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(
      std::chrono::duration<double>(seconds < 0 ? 0 : seconds)));
  timer->async_wait([timer, fn = std::move(fn)](const error_code& ec) {
    if (!ec) fn();
  });
}

void EventLoop::run() {
  impl_->io.restart();
  impl_->io.run();
}

bool EventLoop::run_for(double seconds) {
  impl_->io.restart();
  impl_->io.run_for(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds)));
  return impl_->io.stopped();
}

void EventLoop::stop() { impl_->io.stop(); }

// ---------------------------------------------------------------- HttpClient

struct HttpClient::Impl {
  asio::io_context& io;
  Url base;
  tcp::endpoint endpoint;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<tcp::socket> idle;  // kept-alive connections ready for the next request
  uint64_t opened = 0;
  Impl(asio::io_context& io_, const Url& b) : io(io_), base(b) {
    error_code ec;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(base.host, std::to_string(base.port), ec);
    if (ec || results.empty()) fail("cannot resolve {}: {}", base.host, ec.message());
    endpoint = results.begin()->endpoint();
  }
};

namespace {

// One request/response exchange; owns its socket until it either returns it to the pool or drops it.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<HttpClient::Impl> client, http::request<http::string_body> req, HttpCallbacks cb)
      : client_(std::move(client)), sock_(client_->io), timer_(client_->io), req_(std::move(req)), cb_(std::move(cb)) {}

  void start(double timeout_s) {
    if (timeout_s > 0) {
      timer_.expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(
          std::chrono::duration<double>(timeout_s)));
      timer_.async_wait([weak = weak_from_this(), timeout_s](const error_code& ec) {
        if (auto self = weak.lock(); self && !ec) self->abort(fmt::format("timed out after {} s", timeout_s));
      });
    }
    if (!client_->idle.empty()) {
      sock_ = std::move(client_->idle.back());
      client_->idle.pop_back();
      reused_ = true;
      write();
    } else {
      connect();
    }
  }

  // Closing the socket ends the pending operation with an error; its handler reports `why`.
  void abort(const std::string& why) {
    if (done_ || !aborted_.empty()) return;
    aborted_ = why;
    error_code ignored;
    sock_.close(ignored);
  }

 private:
  void connect() {
    reused_ = false;
    client_->opened++;
    sock_.async_connect(client_->endpoint, [self = shared_from_this()](const error_code& ec) {
      if (!self->aborted_.empty()) return self->finish(self->aborted_);
      if (ec) return self->finish("connect to " + self->client_->base.str() + ": " + ec.message());
      self->sock_.set_option(tcp::no_delay(true));
      self->write();
    });
  }

  void write() {
    http::async_write(sock_, req_, [self = shared_from_this()](const error_code& ec, size_t) {
      if (ec) return self->retry_or_fail(ec);
      self->parser_.emplace();
      // Beast 1.74 compares the length with an empty optional as "over the limit": use a huge one.
      self->parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
      self->read();
    });
  }

  void read() {
    http::async_read_some(sock_, buf_, *parser_, [self = shared_from_this()](const error_code& ec, size_t) {
      self->on_read(ec);
    });
  }

  void on_read(const error_code& ec) {
    if (ec) return retry_or_fail(ec);
    got_bytes_ = true;
    if (!headers_seen_ && parser_->is_header_done()) {
      headers_seen_ = true;
      auto& res = parser_->get();
      if (cb_.on_head) {
        HttpHeaders fields;
        for (const auto& f : res) {
          std::string name(f.name_string().data(), f.name_string().size());
          for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
          fields.emplace_back(std::move(name), std::string(f.value().data(), f.value().size()));
        }
        cb_.on_head(static_cast<int>(res.result_int()), fields);
      }
      if (cb_.on_headers) cb_.on_headers(static_cast<int>(res.result_int()), std::string_view(res.reason().data(), res.reason().size()));
    }
    if (!aborted_.empty()) return finish(aborted_);  // a callback cancelled the exchange
    auto& body = parser_->get().body();
    if (!body.empty()) {
      if (cb_.on_body) cb_.on_body(body);
      body.clear();
    }
    if (!aborted_.empty()) return finish(aborted_);
    if (parser_->is_done()) {
      if (parser_->get().keep_alive()) client_->idle.push_back(std::move(sock_));
      return finish("");
    }
    read();
  }

  // A kept-alive connection the server closed meanwhile fails before any byte: retry on a new one.
  void retry_or_fail(const error_code& ec) {
    if (!aborted_.empty()) return finish(aborted_);
    if (reused_ && !got_bytes_) {
      error_code ignored;
      sock_.close(ignored);
      sock_ = tcp::socket(client_->io);
      parser_.reset();
      buf_.clear();
      return connect();
    }
    finish(ec == http::error::end_of_stream || ec == asio::error::eof ? "connection closed before the response ended"
                                                                       : ec.message());
  }

  void finish(const std::string& error) {
    if (done_) return;
    done_ = true;
    timer_.cancel();
    if (!error.empty()) {
      error_code ignored;
      sock_.close(ignored);
    }
    if (cb_.on_done) cb_.on_done(error);
  }

  std::shared_ptr<HttpClient::Impl> client_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  http::request<http::string_body> req_;
  HttpCallbacks cb_;
  beast::flat_buffer buf_;
  std::optional<http::response_parser<http::string_body>> parser_;
  bool reused_ = false, got_bytes_ = false, headers_seen_ = false, done_ = false;
  std::string aborted_;  // why the exchange was cut short ("" while it runs normally)
};

}  // namespace

HttpClient::HttpClient(EventLoop& loop, const Url& base)
    : impl_(std::make_shared<Impl>(loop.impl().io, base)) {
  if (const char* key = std::getenv("OPENAI_API_KEY"); key && *key) {
    set_header("Authorization", std::string("Bearer ") + key);  // sglang's get_auth_headers
  } else if (const char* key2 = std::getenv("API_KEY"); key2 && *key2) {
    set_header("Authorization", key2);
  }
}

HttpClient::~HttpClient() = default;

void HttpClient::set_header(std::string name, std::string value) {
  impl_->headers.emplace_back(std::move(name), std::move(value));
}

void HttpClient::clear_headers() { impl_->headers.clear(); }

HttpCancel HttpClient::request(const std::string& method, const std::string& path, std::string body, HttpCallbacks cb,
                               const HttpRequestOptions& options) {
  http::request<http::string_body> req;
  req.method(http::string_to_verb(method));
  req.target(impl_->base.prefix + path);
  req.version(11);
  req.set(http::field::host, impl_->base.host + ":" + std::to_string(impl_->base.port));
  req.set(http::field::user_agent, "dsserve-bench");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  for (const auto& [k, v] : impl_->headers) req.set(k, v);
  for (const auto& [k, v] : options.headers) req.set(k, v);
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();
  auto exchange = std::make_shared<Exchange>(impl_, std::move(req), std::move(cb));
  exchange->start(options.timeout_s);
  return [weak = std::weak_ptr<Exchange>(exchange)] {
    if (auto e = weak.lock()) e->abort("cancelled");
  };
}

uint64_t HttpClient::connections_opened() const { return impl_->opened; }

HttpResponse http_fetch(const Url& base, const std::string& method, const std::string& path, const std::string& body,
                        double timeout_s) {
  HttpResponse r;
  bool done = false;
  {
    EventLoop loop;
    HttpClient client(loop, base);
    client.request(method, path, body,
                   {[&](int status, std::string_view reason) {
                      r.status = status;
                      r.reason = reason;
                    },
                    [&](std::string_view data) { r.body += data; },
                    [&](const std::string& error) {
                      r.error = error;
                      done = true;
                    }});
    loop.run_for(timeout_s);
  }
  if (!done) r.error = fmt::format("no response from {}{} within {} s", base.str(), path, timeout_s);
  return r;
}

void raise_fd_limit(uint64_t target) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur >= target) return;
  rl.rlim_cur = std::min<rlim_t>(target, rl.rlim_max);
  setrlimit(RLIMIT_NOFILE, &rl);
}

}  // namespace ds::bench
