#include "server/output_writer.h"

namespace ds::server {

void ChoiceState::add(const runtime::RequestOutput& out, double now_s) {
  if (first_token_s < 0 && !out.token_ids.empty()) first_token_s = now_s;
  text += out.text;
  token_ids.insert(token_ids.end(), out.token_ids.begin(), out.token_ids.end());
  logprobs.insert(logprobs.end(), out.logprobs.begin(), out.logprobs.end());
  prompt_tokens = out.prompt_tokens;
  completion_tokens = out.completion_tokens;
  if (out.cached_tokens > cached_tokens) cached_tokens = out.cached_tokens;
  spec_verify_ct = out.spec_verify_ct;
  spec_accept_tokens = out.spec_accept_tokens;
  spec_draft_tokens = out.spec_draft_tokens;
  jump_forward_tokens = out.jump_forward_tokens;
  if (out.finished) {
    finish = out.finish_reason == runtime::FinishReason::None ? runtime::FinishReason::Stop : out.finish_reason;
    matched_token = out.matched_stop_token;
    matched_str = out.matched_stop_str;
    error = out.error;
    finish_s = now_s;
  }
}

std::string sse_event(const Json& j) { return "data: " + dump(j) + "\n\n"; }

UsageCounts count_usage(const std::vector<ChoiceState>& choices, int32_t n) {
  UsageCounts u;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (n <= 1 || i % size_t(n) == 0) {
      u.prompt += choices[i].prompt_tokens;
      u.cached += choices[i].cached_tokens;
    }
    u.completion += choices[i].completion_tokens;
  }
  return u;
}

Json response_object(const ResponseHead& head, Json choices) {
  Json j = Json::object();
  j["id"] = head.id;
  j["object"] = head.object;
  j["created"] = head.created;
  j["model"] = head.model;
  j["choices"] = std::move(choices);
  return j;
}

std::string stream_end_events(const ResponseHead& head, bool include_usage, const UsageCounts& usage,
                              int64_t reasoning_tokens) {
  std::string out;
  if (include_usage) {
    Json j = response_object(head, Json::array());
    j["usage"] = usage_json(usage, reasoning_tokens);
    out += sse_event(j);
  }
  out += kSseDone;
  return out;
}

Json usage_json(const UsageCounts& u, int64_t reasoning_tokens) {
  Json j = Json::object();
  j["prompt_tokens"] = u.prompt;
  j["completion_tokens"] = u.completion;
  j["total_tokens"] = u.prompt + u.completion;
  j["prompt_tokens_details"] = Json{{"cached_tokens", u.cached}};
  j["completion_tokens_details"] = Json{{"reasoning_tokens", reasoning_tokens}};
  j["reasoning_tokens"] = reasoning_tokens;
  return j;
}

const char* finish_name(runtime::FinishReason r) {
  switch (r) {
    case runtime::FinishReason::None: return "";
    case runtime::FinishReason::Stop: return "stop";
    case runtime::FinishReason::Length: return "length";
    case runtime::FinishReason::Abort: return "abort";
    case runtime::FinishReason::Error: return "error";
  }
  return "";
}

Json openai_finish_reason(const ChoiceState& c) {
  if (!c.finished()) return nullptr;
  return finish_name(c.finish);
}

Json matched_stop(const ChoiceState& c) {
  if (c.finish != runtime::FinishReason::Stop) return nullptr;
  if (c.matched_str) return *c.matched_str;
  if (c.matched_token) return *c.matched_token;
  return nullptr;
}

}  // namespace ds::server
