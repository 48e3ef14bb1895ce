#include "router/response_relay.h"

#include "server/api_error.h"
#include "server/json.h"

namespace ds::router {

namespace {
// Response headers that mean something to the client (the rest describe the upstream connection).
bool passes_back(const std::string& name) {
  return name == "retry-after" || name == "www-authenticate" || name == "allow" || name == "x-request-id";
}
}  // namespace

void ResponseRelay::reset() { *this = ResponseRelay(); }

bool ResponseRelay::head(int status, const bench::HttpHeaders& h, bool may_drop_503, server::Responder& client) {
  status_ = status;
  bool chunked = false, has_length = false;
  for (const auto& [k, v] : h) {
    if (k == "content-type") content_type_ = v;
    else if (k == "transfer-encoding") chunked = chunked || v.find("chunked") != std::string::npos;
    else if (k == "content-length") has_length = true;
    else if (passes_back(k)) headers_.emplace_back(k, v);
  }
  if (status == 503 && may_drop_503) {
    dropped_503_ = true;
    return false;
  }
  if (chunked || !has_length) {
    streaming_ = true;
    client.start_stream(status, content_type_, headers_);
  }
  return true;
}

void ResponseRelay::data(std::string_view d, server::Responder& client) {
  if (streaming_) client.send(std::string(d));
  else body_.append(d);
}

void ResponseRelay::finish(server::Responder& client) {
  if (streaming_) return client.end_stream();
  server::HttpResponse r;
  r.status = status_;
  r.content_type = content_type_;
  r.body = std::move(body_);
  r.headers = std::move(headers_);
  client.respond(std::move(r));
}

void ResponseRelay::broke_off(const std::string& why, server::Responder& client) {
  if (content_type_.starts_with("text/event-stream"))
    client.send("data: " + server::dump(server::error_body(502, why)) + "\n\n");
  client.end_stream();
}

}  // namespace ds::router
