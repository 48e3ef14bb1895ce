// What the API layer sees of HTTP: a parsed request and a Responder to answer it through.
// No Asio or Beast here, so the endpoints can be tested without sockets (tests/unit/server_fakes.h).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds::server {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: path + query
  std::string path;    // without the query
  HeaderList headers;  // names in lower case
  std::string body;

  // The first value of a header (name in lower case), or nullptr.
  const std::string* header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return &v;
    return nullptr;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;  // extra headers, e.g. Retry-After
};

// The answer side of one request. Exactly one of respond() or start_stream() [+ send() ...] +
// end_stream() per request. Every method may be called from any thread: the work is queued on the
// connection's own serial executor (post() runs a function there too), so calls keep their order.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void respond(HttpResponse response) = 0;
  // A chunked response (SSE): the head now, the data as it comes.
  virtual void start_stream(int status, std::string content_type, HeaderList headers = {}) = 0;
  virtual void send(std::string data) = 0;
  virtual void end_stream() = 0;
  // `fn` runs once, on the connection's executor, if the client goes away before the response is
  // complete (closed socket, reset, or a write that timed out). Set it before starting work; a
  // client already gone runs it at once.
  virtual void on_disconnect(std::function<void()> fn) = 0;
  // Runs `fn` on the connection's executor (never inline).
  virtual void post(std::function<void()> fn) = 0;
};

using RequestHandler = std::function<void(HttpRequest&& request, std::shared_ptr<Responder> responder)>;

}  // namespace ds::server
