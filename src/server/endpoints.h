// The API's endpoints. Each runs on the connection's executor, answers through the Responder
// (now, or later for generation) and throws ApiError for bad requests; ApiServer maps the throw to
// the error response.
#pragma once
#include <memory>

#include "server/http_types.h"
#include "server/server_state.h"

namespace ds::server {

using EndpointFn = void (*)(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);

void chat_completions(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void completions(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void responses(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);  // /v1/responses
void generate(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);

void health(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void health_generate(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void list_models(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void get_model(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);  // /v1/models/{id}
void model_info(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void server_info(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void flush_cache(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void metrics(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void tokenize(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void detokenize(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);
void abort_request(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r);

// A 200 JSON answer.
void respond_json(const std::shared_ptr<Responder>& r, const Json& body, int status = 200);

}  // namespace ds::server
