// An asynchronous HTTP/1.1 client for many concurrent streaming requests on ONE thread
// (Boost.Beast over Asio, hidden behind a pimpl so that no header here pulls them in).
// Connections are kept alive and reused; a reused connection that the server had closed is
// transparently replaced once. Also the router's upstream client (src/router): per-request headers,
// a timeout, the response head, and cancellation (closing the connection, which a server takes as
// the client going away).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds::bench {

struct Url {
  std::string host;
  uint16_t port = 80;
  std::string prefix;  // path before the endpoint, without a trailing '/'
  // "http://host:port/prefix"; the scheme may be omitted. https is refused with a clear error.
  static Url parse(const std::string& text);
  // sglang's rule: --base-url when given, else http://host:port.
  static Url from_flags(const std::string& base_url, const std::string& host, int port);
  std::string str() const;
};

// A single-threaded event loop: callbacks, timers and all HTTP I/O run on the thread in run().
class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  void post(std::function<void()> fn);
  void after(double seconds, std::function<void()> fn);
  void run();                           // returns when no work is left
  bool run_for(double seconds);         // false when work was still pending at the deadline
  void stop();
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpCallbacks {
  std::function<void(int status, std::string_view reason)> on_headers;
  std::function<void(std::string_view data)> on_body;     // de-chunked body bytes, as they arrive
  std::function<void(const std::string& error)> on_done;  // "" when the response was read to its end
  // The response's header fields (names in lower case), just before on_headers; optional.
  std::function<void(int status, const HttpHeaders& headers)> on_head = nullptr;
};

struct HttpRequestOptions {
  HttpHeaders headers;   // for this request only; replace the client's own of the same name
  double timeout_s = 0;  // the whole exchange; 0: none. On expiry on_done gets "timed out after N s"
};

// Cancels an exchange that is still running: its connection is closed (never reused) and on_done
// gets "cancelled". Call it on the loop; a no-op once on_done ran.
using HttpCancel = std::function<void()>;

class HttpClient {
 public:
  HttpClient(EventLoop& loop, const Url& base);
  ~HttpClient();
  void set_header(std::string name, std::string value);  // sent with every request
  void clear_headers();  // drops those, the API key from the environment included
  // Starts one exchange; `path` is appended to the base URL's prefix. Callbacks run on the loop.
  HttpCancel request(const std::string& method, const std::string& path, std::string body, HttpCallbacks cb,
                     const HttpRequestOptions& options = {});
  uint64_t connections_opened() const;
  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

struct HttpResponse {
  int status = 0;
  std::string reason, body, error;  // error: transport failure or timeout ("" when a response came)
  bool ok() const { return error.empty() && status == 200; }
};

// One blocking request (setup calls such as /v1/models); uses its own loop.
HttpResponse http_fetch(const Url& base, const std::string& method, const std::string& path,
                        const std::string& body = "", double timeout_s = 30);

// Raises RLIMIT_NOFILE's soft limit toward `target` (sglang's set_ulimit), for many connections.
void raise_fd_limit(uint64_t target = 65535);

}  // namespace ds::bench
