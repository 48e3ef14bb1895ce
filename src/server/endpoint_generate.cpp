// POST /generate, SGLang's native API: {"text" | "input_ids", "sampling_params", "stream", "rid",
// "return_logprob", "top_logprobs_num", ...}. A list of texts / id lists is a batch.
#include "server/api_error.h"
#include "server/endpoints.h"
#include "server/generate_writer.h"
#include "server/generation_job.h"
#include "server/json_fields.h"
#include "server/request_helpers.h"

namespace ds::server {
namespace {

// The prompts of the request, and whether it was a batch (a list of prompts).
std::vector<std::vector<int32_t>> read_prompts(const ServerState& st, const Json& body, bool& batch) {
  const Json* text = Fields{body, ""}.get("text");
  const Json* ids = Fields{body, ""}.get("input_ids");
  if ((text != nullptr) == (ids != nullptr)) bad_request("give exactly one of text and input_ids");
  std::vector<std::vector<int32_t>> out;
  const bool bos = st.tokenizer.add_bos_token();
  auto id_list = [&](const Json& j, const std::string& param) { return read_token_ids(st, j, param); };
  batch = false;
  if (text) {
    if (text->is_string()) {
      out.push_back(st.tokenizer.encode(text->get<std::string>(), bos));
    } else if (text->is_array() && !text->empty()) {
      batch = true;
      for (const auto& t : *text) {
        if (!t.is_string()) bad_param("text", "text must be a string or a list of strings");
        out.push_back(st.tokenizer.encode(t.get<std::string>(), bos));
      }
    } else {
      bad_param("text", "text must be a string or a non-empty list of strings");
    }
  } else {
    if (!ids->is_array() || ids->empty()) bad_param("input_ids", "input_ids must be a non-empty list");
    if ((*ids)[0].is_array()) {
      batch = true;
      for (size_t i = 0; i < ids->size(); ++i) {
        if (!(*ids)[i].is_array())
          bad_param("input_ids", "input_ids must be a list of integers or a list of such lists");
        out.push_back(id_list((*ids)[i], "input_ids[" + std::to_string(i) + "]"));
      }
    } else {
      out.push_back(id_list(*ids, "input_ids"));
    }
  }
  for (const auto& p : out)
    if (p.empty()) bad_param(text ? "text" : "input_ids", "the prompt must not be empty");
  return out;
}

}  // namespace

void generate(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  Json body = parse_body(req.body);
  Fields f{body, ""};
  const bool stream = f.boolean("stream").value_or(false);
  GenerationParams params = parse_native_params(
      body.contains("sampling_params") && !body["sampling_params"].is_null() ? body["sampling_params"] : Json::object(),
      st.config.sampling_defaults);
  GenerateWriterOptions wo;
  wo.stream = stream;
  wo.return_logprob = f.boolean("return_logprob").value_or(false);
  wo.top_logprobs_num = int32_t(f.integer("top_logprobs_num", 0, 20).value_or(0));
  wo.return_text_in_logprobs = f.boolean("return_text_in_logprobs").value_or(false);
  if (wo.return_logprob) {
    if (auto start = f.integer("logprob_start_len"); start && *start >= 0)
      bad_param("logprob_start_len", "input token logprobs (logprob_start_len >= 0) are not supported by this server");
    params.sampling.logprobs = true;
    params.sampling.top_logprobs = wo.top_logprobs_num;
  }
  // How many prompts, from the JSON alone: the limit applies before any tokenizing or copying.
  size_t num_prompts = 1;
  if (const Json* t = f.get("text"); t && t->is_array()) num_prompts = t->size();
  if (const Json* ids = f.get("input_ids"); ids && ids->is_array() && !ids->empty() && (*ids)[0].is_array())
    num_prompts = ids->size();
  check_generation_count(st, num_prompts, params.n, f.get("text") ? "text" : "input_ids");
  bool batch = false;
  auto prompts = read_prompts(st, body, batch);
  wo.batch = batch || params.n > 1;

  // rid: one string (choices are rid-k when there are several) or, for a batch, one per prompt.
  std::string rid;
  std::vector<std::string> rids;
  if (const Json* j = f.get("rid")) {
    if (j->is_string()) {
      rid = j->get<std::string>();
      if (rid.empty()) bad_param("rid", "rid must not be empty");
    } else if (j->is_array() && batch && j->size() == prompts.size() && params.n == 1) {
      for (const auto& x : *j) {
        if (!x.is_string() || x.get<std::string>().empty()) bad_param("rid", "rid must be a list of non-empty strings");
        rids.push_back(x.get<std::string>());
      }
    } else {
      bad_param("rid", "rid must be a string, or for a batch with n = 1 a list of one string per prompt");
    }
  }
  if (rid.empty()) rid = new_request_id("");

  std::vector<runtime::GenerateRequest> requests;
  const bool numbered = prompts.size() * size_t(params.n) > 1;
  for (const auto& p : prompts) {
    const int32_t max_new = resolve_max_new_tokens(st, p.size(), params, 128, "sampling_params.max_new_tokens");
    for (auto& rq : make_requests(rid, p, params, max_new, numbered, requests.size()))
      requests.push_back(std::move(rq));
  }
  for (size_t i = 0; i < rids.size(); ++i) requests[i].id = rids[i];
  attach_grammar(*st.grammars, st.tokenizer, params.grammar, false, requests);
  attach_bootstrap(body, requests);

  auto writer = std::make_unique<GenerateWriter>(wo, st.tokenizer);
  auto job = std::make_shared<GenerationJob>(st, r, GenerationJob::Options{rid, stream, params.n}, std::move(writer));
  job->start(std::move(requests));
}

}  // namespace ds::server
