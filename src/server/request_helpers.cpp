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
    if (plen + *p.max_new_tokens > ctx)
      bad_param(param, fmt::format("Requested token count exceeds the model's maximum context length of {} tokens. "
                                   "You requested a total of {} tokens: {} tokens from the input and {} tokens for "
                                   "the completion. Please reduce the input or the completion.",
                                   ctx, plen + *p.max_new_tokens, plen, *p.max_new_tokens));
    return int32_t(*p.max_new_tokens);
  }
  const int64_t left = ctx - plen;
  if (left <= 0)
    bad_param(param, fmt::format("The input is {} tokens long, which leaves no room in the model's maximum "
                                 "context length of {} tokens.",
                                 plen, ctx));
  return int32_t(default_max < 0 ? left : std::min(default_max, left));
}

void check_token_ids(const ServerState& st, const std::vector<int32_t>& ids, const std::string& param) {
  const int32_t vocab = st.tokenizer.vocab_size();
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      bad_param(param, fmt::format("{}[{}] = {} is not a token id (vocabulary size {})", param, i, ids[i], vocab));
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
