// POST /v1/responses (OpenAI's Responses API, stateless): the body is translated into a chat
// request (responses_request.h), prepared as /v1/chat/completions prepares one, and written as
// Responses output items or streaming events (responses_writer.h).
#include <ctime>

#include "server/chat_prepare.h"
#include "server/endpoints.h"
#include "server/generation_job.h"
#include "server/json_fields.h"
#include "server/request_helpers.h"
#include "server/responses_request.h"
#include "server/responses_writer.h"

namespace ds::server {
namespace {

// What the response object repeats from the request, with OpenAI's defaults.
Json echo_fields(const Json& body, const PreparedChat& chat) {
  auto or_default = [&](const char* key, Json fallback) {
    auto it = body.find(key);
    return it == body.end() || it->is_null() ? fallback : *it;
  };
  Json e = Json::object();
  e["instructions"] = or_default("instructions", nullptr);
  e["max_output_tokens"] = or_default("max_output_tokens", nullptr);
  e["parallel_tool_calls"] = or_default("parallel_tool_calls", true);
  e["temperature"] = chat.params.sampling.temperature;
  e["top_p"] = chat.params.sampling.top_p;
  e["tool_choice"] = or_default("tool_choice", "auto");
  e["tools"] = responses_tools_echo(body);
  Json reasoning = {{"effort", nullptr}, {"summary", nullptr}};
  if (auto r = body.find("reasoning"); r != body.end() && r->is_object())
    for (const char* k : {"effort", "summary"})
      if (r->contains(k)) reasoning[k] = (*r)[k];
  e["reasoning"] = std::move(reasoning);
  e["text"] = {{"format", {{"type", "text"}}}};
  e["truncation"] = "disabled";
  e["user"] = or_default("user", nullptr);
  e["metadata"] = or_default("metadata", Json::object());
  return e;
}

}  // namespace

void responses(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  const Json body = parse_body(req.body);
  Json chat_body = responses_to_chat(body);
  const bool stream = Fields{body, ""}.boolean("stream").value_or(false);

  ResponsesWriterOptions wo;
  wo.id = new_request_id("resp_");
  PreparedChat chat = prepare_chat(st, chat_body, wo.id);
  attach_bootstrap(body, chat.requests);
  wo.created = int64_t(std::time(nullptr));
  wo.model = st.config.served_model_name;
  wo.stream = stream;
  wo.parser = chat.parser;
  wo.echo = echo_fields(body, chat);
  auto writer = std::make_unique<ResponsesWriter>(std::move(wo));
  const std::string id = chat.requests.front().id;
  auto job = std::make_shared<GenerationJob>(st, r, GenerationJob::Options{id, stream, 1}, std::move(writer));
  job->start(std::move(chat.requests));
}

}  // namespace ds::server
