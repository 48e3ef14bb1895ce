// The API on top of the transport: routes (OpenAI + SGLang native), the API key, and the mapping of
// errors to OpenAI error objects. Owns the ServerState the endpoints share.
#pragma once
#include <memory>

#include "server/http_types.h"
#include "server/server_state.h"

namespace ds::server {

class ApiServer {
 public:
  // `encoder` may be null (no chat format): chat requests then get a 400.
  ApiServer(ServerConfig config, runtime::Engine& engine, const tok::Tokenizer& tokenizer,
            std::unique_ptr<chat::ChatEncoder> encoder);
  // The HttpServer's handler.
  void handle(HttpRequest&& request, std::shared_ptr<Responder> responder);
  ServerState& state() { return st_; }
  // Shutdown has begun: from now on generation requests and /health get 503 (a load balancer takes
  // the server out; requests already running go on). Thread-safe.
  void begin_drain() { st_.draining = true; }

 private:
  bool authorized(const HttpRequest& request) const;
  ServerState st_;
};

}  // namespace ds::server
