// One upstream response on its way to the client, shared by the plain proxy and the PD proxy: the head
// decides whether it streams (chunked or unsized: forwarded piece by piece) or is read whole, a 503 may be
// dropped so that the caller retries elsewhere, and the end either closes the stream, answers whole, or —
// for a stream that broke off — tells an SSE client in its own terms.
#pragma once
#include <string>
#include <string_view>

#include "bench/http_client.h"
#include "server/http_types.h"

namespace ds::router {

class ResponseRelay {
 public:
  void reset();
  // The response's head. may_drop_503: a 503 is dropped (returns false; nothing went to the client) so
  // the caller can try another worker.
  bool head(int status, const bench::HttpHeaders& h, bool may_drop_503, server::Responder& client);
  void data(std::string_view d, server::Responder& client);
  // The exchange ended well: the stream ends, or the whole response goes out.
  void finish(server::Responder& client);
  // The exchange broke off after the stream began (too late to retry or change the status).
  void broke_off(const std::string& why, server::Responder& client);

  bool streaming() const { return streaming_; }
  bool dropped_503() const { return dropped_503_; }

 private:
  int status_ = 0;
  bool streaming_ = false, dropped_503_ = false;
  std::string content_type_ = "application/json", body_;
  server::HeaderList headers_;
};

}  // namespace ds::router
