#include "server/request_helpers.h"

#include <fmt/format.h>

#include <random>

#include "server/api_error.h"
#include "server/json_fields.h"

namespace ds::server {

bool stream_include_usage(const Json& body) {
  const Json* so = Fields{body, ""}.get("stream_options");
  if (!so) return false;
  if (!so->is_object()) bad_param("stream_options", "stream_options must be an object");
  return Fields{*so, "stream_options"}.boolean("include_usage").value_or(false);
}

void check_model(const ServerState& st, const Json& body) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) return;
  if (!it->is_string()) bad_param("model", "model must be a string");
  const auto& m = it->get_ref<const std::string&>();
  if (m == st.config.served_model_name || m == st.config.model_path || m == "default") return;
  throw ApiError(404,
                 fmt::format("The model `{}` does not exist. This server serves `{}`.", m, st.config.served_model_name),
                 "model", "model_not_found");
}

int32_t resolve_max_new_tokens(const ServerState& st, size_t prompt_len, const GenerationParams& p, int64_t default_max,
                               const char* param) {
  const int64_t ctx = st.config.context_length, plen = int64_t(prompt_len);
  if (p.max_new_tokens) {
    // Compared without the sum: max_tokens may be anything up to 2^63 - 1.
    if (*p.max_new_tokens > ctx - plen)
      bad_param(param, fmt::format("Requested token count exceeds the model's maximum context length of {} tokens. "
                                   "You requested a total of {} tokens: {} tokens from the input and {} tokens for "
                                   "the completion. Please reduce the input or the completion.",
                                   ctx, uint64_t(plen) + uint64_t(*p.max_new_tokens), plen, *p.max_new_tokens));
    return int32_t(*p.max_new_tokens);
  }
  const int64_t left = ctx - plen;
  if (left <= 0)
    bad_param(param, fmt::format("The input is {} tokens long, which leaves no room in the model's maximum "
                                 "context length of {} tokens.",
                                 plen, ctx));
  return int32_t(default_max < 0 ? left : std::min(default_max, left));
}

void check_generation_count(const ServerState& st, size_t prompts, int32_t n, const std::string& param) {
  const uint64_t want = uint64_t(prompts) * uint64_t(std::max(n, 1));
  const uint64_t limit = uint64_t(std::max(st.engine.config().max_queued_requests, 0));
  if (want > 1 && want > limit)  // a single one is the engine's to refuse (503: the queue is full now)
    bad_param(param, fmt::format("this request asks for {} generations ({} prompts x n = {}); the server queues at "
                                 "most {} (--max-queued-requests): send fewer prompts per request",
                                 want, prompts, n, limit));
}

static int32_t token_id_limit(const ServerState& st) {
  return st.config.model_vocab_size > 0 ? st.config.model_vocab_size : st.tokenizer.vocab_size();
}

std::vector<int32_t> read_token_ids(const ServerState& st, const Json& list, const std::string& param) {
  if (!list.is_array()) bad_param(param, param + " must be a list of integers");
  const int32_t vocab = token_id_limit(st);
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& x = list[i];
    if (!x.is_number_integer()) bad_param(param, param + " must be a list of integers");
    // The value as sent (a uint64 above 2^63 included), never a wrapped or clamped one.
    const bool ok = x.is_number_unsigned() ? x.get<uint64_t>() < uint64_t(vocab)
                                           : x.get<int64_t>() >= 0 && x.get<int64_t>() < vocab;
    if (!ok)
      bad_param(param, fmt::format("{}[{}] = {} is not a token id (vocabulary size {})", param, i,
                                   x.is_number_unsigned() ? std::to_string(x.get<uint64_t>())
                                                          : std::to_string(x.get<int64_t>()),
                                   vocab));
    ids.push_back(int32_t(x.get<int64_t>()));
  }
  return ids;
}

std::string new_request_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:016x}", prefix, rng(), rng());
}

std::vector<runtime::GenerateRequest> make_requests(const std::string& base_id, const std::vector<int32_t>& prompt,
                                                    const GenerationParams& p, int32_t max_new_tokens, bool numbered,
                                                    size_t first_index) {
  std::vector<runtime::GenerateRequest> out;
  for (int32_t k = 0; k < p.n; ++k) {
    runtime::GenerateRequest r;
    r.id = numbered ? fmt::format("{}-{}", base_id, first_index + size_t(k)) : base_id;
    r.prompt = prompt;
    r.sampling = p.sampling;
    if (p.sampling.seed && k > 0) r.sampling.seed = *p.sampling.seed + uint64_t(k);
    r.max_new_tokens = max_new_tokens;
    r.stop = p.stop;
    r.stop_token_ids = p.stop_token_ids;
    r.skip_special_tokens = p.skip_special_tokens;
    r.no_stop_trim = p.no_stop_trim;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace ds::server

namespace ds::server {

namespace {
// Element k of a field that is a scalar or a list of one per generation.
const Json& nth(const Json& v, size_t k, size_t n, const char* name) {
  if (!v.is_array()) return v;
  if (v.size() != n)
    bad_param(name, fmt::format("{} has {} entries for {} generations", name, v.size(), n));
  return v[k];
}
}  // namespace

void attach_bootstrap(const Json& body, std::vector<runtime::GenerateRequest>& requests) {
  if (!body.is_object() || !body.contains("bootstrap_room") || body["bootstrap_room"].is_null()) return;
  const Json& rooms = body["bootstrap_room"];
  const Json host = body.value("bootstrap_host", Json());
  const Json port = body.value("bootstrap_port", Json());
  const size_t n = requests.size();
  for (size_t k = 0; k < n; ++k) {
    const Json& h = nth(host, k, n, "bootstrap_host");
    const Json& p = nth(port, k, n, "bootstrap_port");
    const Json& r = nth(rooms, k, n, "bootstrap_room");
    if (!h.is_string() || h.get<std::string>().empty())
      bad_param("bootstrap_host", "bootstrap_host must be the prefill server's host (with bootstrap_room)");
    if (!p.is_number_integer() || p.get<int64_t>() <= 0 || p.get<int64_t>() > 65535)
      bad_param("bootstrap_port", "bootstrap_port must be the prefill server's bootstrap port (with bootstrap_room)");
    if (!r.is_number_integer() || (r.is_number_integer() && !r.is_number_unsigned() && r.get<int64_t>() < 0))
      bad_param("bootstrap_room", "bootstrap_room must be a non-negative integer");
    runtime::BootstrapRoom b;
    b.host = h.get<std::string>();
    b.port = int(p.get<int64_t>());
    b.room = r.get<uint64_t>() + (rooms.is_array() ? 0 : uint64_t(k));
    requests[k].bootstrap = std::move(b);
  }
}

}  // namespace ds::server
