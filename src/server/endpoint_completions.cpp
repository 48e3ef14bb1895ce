// POST /v1/completions: prompt (a string, a list of strings, token ids or a list of those) -> n
// engine requests per prompt; the CompletionWriter builds text_completion bodies / chunks.
#include <ctime>

#include "server/api_error.h"
#include "server/completion_writer.h"
#include "server/endpoints.h"
#include "server/generation_job.h"
#include "server/json_fields.h"
#include "server/request_helpers.h"

namespace ds::server {
namespace {

struct Prompt {
  std::vector<int32_t> ids;
  std::string text;  // for echo
};

bool is_id_list(const Json& j) {
  if (!j.is_array() || j.empty()) return false;
  for (const auto& x : j)
    if (!x.is_number_integer()) return false;
  return true;
}

std::vector<Prompt> read_prompts(const ServerState& st, const Json& body) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) bad_param("prompt", "prompt is required");
  const Json& p = *it;
  const bool bos = st.tokenizer.add_bos_token();
  auto from_text = [&](const std::string& t) { return Prompt{st.tokenizer.encode(t, bos), t}; };
  auto from_ids = [&](const Json& j, const std::string& param) {
    Prompt pr{read_token_ids(st, j, param), ""};
    pr.text = st.tokenizer.decode(pr.ids, false);
    return pr;
  };
  std::vector<Prompt> out;
  if (p.is_string()) {
    out.push_back(from_text(p.get<std::string>()));
  } else if (is_id_list(p)) {
    out.push_back(from_ids(p, "prompt"));
  } else if (p.is_array() && !p.empty()) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i].is_string()) out.push_back(from_text(p[i].get<std::string>()));
      else if (is_id_list(p[i])) out.push_back(from_ids(p[i], "prompt[" + std::to_string(i) + "]"));
      else bad_param("prompt", "prompt must be a string, a list of strings, a list of token ids or a list of those");
    }
  } else {
    bad_param("prompt", "prompt must be a non-empty string, list of strings, list of token ids or list of those");
  }
  for (const auto& pr : out)
    if (pr.ids.empty()) bad_param("prompt", "prompt must not be empty");
  return out;
}

}  // namespace

void completions(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  Json body = parse_body(req.body);
  check_model(st, body);
  Fields f{body, ""};
  const bool stream = f.boolean("stream").value_or(false);
  const bool usage_in_stream = stream_include_usage(body);
  const bool echo = f.boolean("echo").value_or(false);
  GenerationParams params = parse_openai_params(body, OpenAiApi::Completions, st.config.sampling_defaults);
  if (echo && params.sampling.logprobs)
    bad_param("echo", "echo together with logprobs is not supported by this server (no prompt logprobs)");
  {  // the limit applies before any tokenizing or copying
    const Json* p = f.get("prompt");
    check_generation_count(st, p && p->is_array() && !is_id_list(*p) ? p->size() : 1, params.n, "prompt");
  }
  std::vector<Prompt> prompts = read_prompts(st, body);

  CompletionWriterOptions wo;
  wo.id = new_request_id("cmpl-");
  wo.created = int64_t(std::time(nullptr));
  wo.model = st.config.served_model_name;
  wo.stream = stream;
  wo.include_usage = stream && usage_in_stream;
  wo.n = params.n;
  wo.logprobs = params.sampling.logprobs;
  std::vector<runtime::GenerateRequest> requests;
  const bool numbered = prompts.size() * size_t(params.n) > 1;
  for (const auto& pr : prompts) {
    const int32_t max_new = resolve_max_new_tokens(st, pr.ids.size(), params, 16, "prompt");  // OpenAI's default: 16
    for (auto& rq : make_requests(wo.id, pr.ids, params, max_new, numbered, requests.size())) {
      requests.push_back(std::move(rq));
      wo.echo.push_back(echo ? pr.text : std::string());
    }
  }
  attach_grammar(*st.grammars, st.tokenizer, params.grammar, false, requests);
  attach_bootstrap(body, requests);
  auto writer = std::make_unique<CompletionWriter>(wo, st.tokenizer);
  auto job = std::make_shared<GenerationJob>(st, r, GenerationJob::Options{wo.id, stream, params.n}, std::move(writer));
  job->start(std::move(requests));
}

}  // namespace ds::server
