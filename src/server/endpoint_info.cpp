// The small endpoints: health, models, model/server info, cache flush, metrics, tokenize,
// detokenize, abort.
#include <fmt/format.h>

#include "server/api_error.h"
#include "server/endpoints.h"
#include "server/json_fields.h"
#include "server/request_helpers.h"

namespace ds::server {
namespace {

Json model_card(const ServerState& st) {
  Json m = Json::object();
  m["id"] = st.config.served_model_name;
  m["object"] = "model";
  m["created"] = st.started_at;
  m["owned_by"] = "sglang";
  m["root"] = st.config.model_path;
  m["parent"] = nullptr;
  m["max_model_len"] = st.config.context_length;
  return m;
}

Json engine_state(const ServerState& st) {
  const runtime::EngineStats s = st.engine.stats();
  Json j = Json::object();
  j["num_running_reqs"] = s.running;
  j["num_queue_reqs"] = s.queued;
  j["num_pages"] = s.num_pages;
  j["page_size"] = s.page_size;
  j["used_pages"] = s.used_pages;
  j["cached_pages"] = s.cached_pages;
  j["evictable_pages"] = s.evictable_pages;
  j["token_usage"] = s.token_usage();
  j["cache_hit_rate"] = s.cache_hit_rate;
  // Speculative decoding: tokens per decode step of speculating requests (bench_serving reads it).
  j["avg_spec_accept_length"] = s.spec_accept_length();
  j["spec_verify_total"] = s.spec_verify_total;
  j["spec_pauses_total"] = s.spec_pauses_total;
  j["prompt_tokens_total"] = s.prompt_tokens_total;
  j["generation_tokens_total"] = s.generation_tokens_total;
  j["cached_tokens_total"] = s.cached_tokens_total;
  j["requests_total"] = s.requests_total;
  j["retractions_total"] = s.retractions_total;
  j["steps_total"] = s.steps_total;
  j["last_step_ms"] = s.last_step_ms;
  j["last_step_overhead_ms"] = s.last_step_overhead_ms;
  j["live_http_requests"] = st.live.size();
  if (!s.dp_groups.empty()) {  // data parallelism: each DP group's share (the numbers above are sums)
    Json groups = Json::array();
    for (size_t g = 0; g < s.dp_groups.size(); ++g) {
      const runtime::DpGroupStats& d = s.dp_groups[g];
      Json x = Json::object();
      x["dp_rank"] = g;
      x["num_running_reqs"] = d.running;
      x["num_queue_reqs"] = d.queued;
      x["num_pages"] = d.num_pages;
      x["used_pages"] = d.used_pages;
      x["cached_pages"] = d.cached_pages;
      x["evictable_pages"] = d.evictable_pages;
      x["requests_routed"] = d.requests_routed;
      groups.push_back(x);
    }
    j["dp_ranks"] = groups;
  }
  return j;
}

}  // namespace

void respond_json(const std::shared_ptr<Responder>& r, const Json& body, int status) {
  HttpResponse resp;
  resp.status = status;
  resp.body = dump(body);
  r->respond(std::move(resp));
}

void health(ServerState&, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  HttpResponse resp;
  resp.content_type = "text/plain; charset=utf-8";
  r->respond(std::move(resp));
}

// One greedy token through the whole engine: 200 when it comes back, 503 when the engine fails or
// refuses (SGLang's meaning of /health_generate).
void health_generate(ServerState& st, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  runtime::GenerateRequest g;
  g.id = new_request_id("health-");
  int32_t bos = st.tokenizer.bos_id();
  g.prompt = {bos >= 0 ? bos : 0};
  g.sampling.temperature = 0;
  g.max_new_tokens = 1;
  const std::string id = g.id;
  try {
    st.engine.submit(std::move(g), [r](runtime::RequestOutput&& out) {
      if (!out.finished) return;
      bool ok = out.finish_reason == runtime::FinishReason::Length || out.finish_reason == runtime::FinishReason::Stop;
      std::string err = out.error;
      r->post([r, ok, err] {
        if (ok) {
          HttpResponse resp;
          resp.content_type = "text/plain; charset=utf-8";
          r->respond(std::move(resp));
        } else {
          r->respond(error_response(503, "health check generation failed" + (err.empty() ? "" : ": " + err)));
        }
      });
    });
  } catch (const runtime::RequestRejected& e) {
    throw ApiError(503, std::string("health check generation refused: ") + e.what());
  }
  runtime::Engine* engine = &st.engine;
  r->on_disconnect([engine, id] { engine->abort(id); });
}

void list_models(ServerState& st, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  respond_json(r, Json{{"object", "list"}, {"data", Json::array({model_card(st)})}});
}

void get_model(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  std::string name = req.path.substr(std::string("/v1/models/").size());
  if (name != st.config.served_model_name)
    throw ApiError(404, fmt::format("The model `{}` does not exist.", name), "model", "model_not_found");
  respond_json(r, model_card(st));
}

void model_info(ServerState& st, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  Json j = Json::object();
  j["model_path"] = st.config.model_path;
  j["tokenizer_path"] = st.config.tokenizer_path.empty() ? st.config.model_path : st.config.tokenizer_path;
  j["served_model_name"] = st.config.served_model_name;
  j["is_generation"] = true;
  j["preferred_sampling_params"] = nullptr;
  j["weight_version"] = "default";
  j["has_image_understanding"] = false;
  j["has_audio_understanding"] = false;
  j["max_context_length"] = st.config.context_length;
  respond_json(r, j);
}

void server_info(ServerState& st, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  Json j = st.config.server_args;  // SGLang puts the server arguments at the top level
  j["internal_states"] = Json::array({engine_state(st)});
  j["version"] = st.config.version;
  respond_json(r, j);
}

// Asynchronous: the engine answers at its next step boundary (a long prefill step may take a while),
// and the answer comes back to the connection's executor; no I/O thread waits for it.
void flush_cache(ServerState& st, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  st.engine.flush_cache([r](bool flushed) {
    r->post([r, flushed] {
      HttpResponse resp;
      resp.content_type = "text/plain; charset=utf-8";
      if (flushed) {
        resp.body = "Cache flushed.\n";
      } else {
        resp.status = 400;
        resp.body = "Cache not flushed: requests are running. Try again when the server is idle.\n";
      }
      r->respond(std::move(resp));
    });
  });
}

void metrics(ServerState& st, const HttpRequest&, const std::shared_ptr<Responder>& r) {
  if (!st.config.enable_metrics) throw ApiError(404, "metrics are off; start the server with --enable-metrics");
  HttpResponse resp;
  resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp.body = st.metrics.render(st.engine.stats(), st.config.served_model_name);
  r->respond(std::move(resp));
}

// {"prompt": str | [str], "add_special_tokens": bool} -> {"tokens", "count", "max_model_len"}.
void tokenize(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  Json body = parse_body(req.body);
  check_model(st, body);
  Fields f{body, ""};
  const bool special = f.boolean("add_special_tokens").value_or(true);
  const bool bos = special && st.tokenizer.add_bos_token();
  const Json* p = f.get("prompt");
  if (!p) bad_param("prompt", "prompt is required");
  Json out = Json::object();
  if (p->is_string()) {
    auto ids = st.tokenizer.encode(p->get<std::string>(), bos);
    out["tokens"] = ids;
    out["count"] = ids.size();
  } else if (p->is_array()) {
    Json tokens = Json::array(), counts = Json::array();
    for (const auto& s : *p) {
      if (!s.is_string()) bad_param("prompt", "prompt must be a string or a list of strings");
      auto ids = st.tokenizer.encode(s.get<std::string>(), bos);
      counts.push_back(ids.size());
      tokens.push_back(std::move(ids));
    }
    out["tokens"] = std::move(tokens);
    out["count"] = std::move(counts);
  } else {
    bad_param("prompt", "prompt must be a string or a list of strings");
  }
  out["max_model_len"] = st.config.context_length;
  respond_json(r, out);
}

// {"tokens": [ids] | [[ids]]} -> {"text": str | [str]}.
void detokenize(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  Json body = parse_body(req.body);
  check_model(st, body);
  Fields f{body, ""};
  const bool skip = f.boolean("skip_special_tokens").value_or(false);
  const Json* t = f.get("tokens");
  if (!t || !t->is_array()) bad_param("tokens", "tokens must be a list of token ids or a list of such lists");
  auto ids_of = [&](const Json& list, const std::string& param) { return read_token_ids(st, list, param); };
  Json out = Json::object();
  if (!t->empty() && (*t)[0].is_array()) {
    Json texts = Json::array();
    for (size_t i = 0; i < t->size(); ++i) {
      if (!(*t)[i].is_array()) bad_param("tokens", "tokens must be a list of token ids or a list of such lists");
      texts.push_back(st.tokenizer.decode(ids_of((*t)[i], fmt::format("tokens[{}]", i)), skip));
    }
    out["text"] = std::move(texts);
  } else {
    out["text"] = st.tokenizer.decode(ids_of(*t, "tokens"), skip);
  }
  respond_json(r, out);
}

// {"rid": id} aborts that request (all its choices); {"abort_all": true} aborts everything.
void abort_request(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  Json body = parse_body(req.body);
  Fields f{body, ""};
  std::vector<std::string> ids;
  if (f.boolean("abort_all").value_or(false)) {
    ids = st.live.all_engine_ids();
  } else {
    auto rid = f.string("rid");
    if (!rid) bad_param("rid", "rid is required (or abort_all: true)");
    ids = st.live.engine_ids(*rid);
    if (ids.empty()) ids.push_back(*rid);  // an engine id of a batch, or unknown (then a no-op)
  }
  for (const auto& id : ids) st.engine.abort(id);
  respond_json(r, Json::object());
}

}  // namespace ds::server
