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

 private:
  bool authorized(const HttpRequest& request) const;
  ServerState st_;
};

}  // namespace ds::server
