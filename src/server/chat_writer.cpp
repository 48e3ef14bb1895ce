#include "server/chat_writer.h"

#include "server/api_error.h"
#include "server/logprobs_json.h"

namespace ds::server {

ChatWriter::ChatWriter(ChatWriterOptions options, size_t num_choices, const tok::Tokenizer& tokenizer)
    : opt_(std::move(options)), tok_(tokenizer), per_(num_choices) {
  for (auto& pc : per_) pc.parser = std::make_unique<chat::ChatOutputParser>(opt_.parser);
  chunk_head_ = "{\"id\":" + dump(opt_.id) +
                ",\"object\":\"chat.completion.chunk\",\"created\":" + std::to_string(opt_.created) +
                ",\"model\":" + dump(opt_.model) + ",\"choices\":[";
}

std::string ChatWriter::chunk_event(size_t i, Json delta, Json finish_reason, Json logprobs, Json matched) const {
  Json choice = Json::object();
  choice["index"] = i;
  choice["delta"] = std::move(delta);
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = std::move(finish_reason);
  if (!matched.is_null()) choice["matched_stop"] = std::move(matched);
  std::string ev = "data: " + chunk_head_;
  ev += dump(choice);
  ev += opt_.include_usage ? "],\"usage\":null}\n\n" : "]}\n\n";
  return ev;
}

Json ChatWriter::finish_reason(const ChoiceState& c, const PerChoice& pc) const {
  if (c.finish == runtime::FinishReason::Stop && !pc.message.tool_calls.empty()) return "tool_calls";
  return openai_finish_reason(c);
}

namespace {
Json tool_call_delta_json(const chat::ToolCallDelta& d) {
  Json j = Json::object();
  j["index"] = d.index;
  if (d.id) j["id"] = *d.id;
  if (d.name) j["type"] = "function";
  Json fn = Json::object();
  if (d.name) fn["name"] = *d.name;
  fn["arguments"] = d.arguments;
  j["function"] = std::move(fn);
  return j;
}
}  // namespace

void ChatWriter::on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice, std::string& sse) {
  PerChoice& pc = per_[i];
  chat::ParsedDelta d = pc.parser->feed(delta.text);
  if (delta.finished) {
    chat::ParsedDelta last = pc.parser->finish();
    d.reasoning_content += last.reasoning_content;
    d.content += last.content;
    for (auto& c : last.tool_calls) d.tool_calls.push_back(std::move(c));
  }
  chat::accumulate(pc.message, d);

  // Reasoning tokens: every output token until the content starts, if reasoning came out at all
  // (a delivery that only closes the reasoning block counts to it).
  if (!d.reasoning_content.empty()) pc.saw_reasoning = true;
  if (!pc.content_started) {
    if (d.content.empty() && d.tool_calls.empty()) pc.pending_tokens += int64_t(delta.token_ids.size());
    else pc.content_started = true;
    if (pc.saw_reasoning) pc.reasoning_tokens = pc.pending_tokens;
  }

  if (!opt_.stream) return;
  if (!pc.role_sent) {
    pc.role_sent = true;
    sse += chunk_event(i, Json{{"role", "assistant"}, {"content", ""}}, nullptr, nullptr, nullptr);
  }
  Json dj = Json::object();
  if (!d.reasoning_content.empty()) dj["reasoning_content"] = d.reasoning_content;
  if (!d.content.empty()) dj["content"] = d.content;
  if (!d.tool_calls.empty()) {
    Json calls = Json::array();
    for (const auto& c : d.tool_calls) calls.push_back(tool_call_delta_json(c));
    dj["tool_calls"] = std::move(calls);
  }
  Json lp = opt_.logprobs && !delta.logprobs.empty() ? chat_logprobs(delta.logprobs, tok_) : Json(nullptr);
  if (!dj.empty() || !lp.is_null()) {
    if (dj.empty()) dj["content"] = "";
    sse += chunk_event(i, std::move(dj), nullptr, std::move(lp), nullptr);
  }
  if (delta.finished) {
    if (choice.finish == runtime::FinishReason::Error)
      sse += sse_event(error_body(500, "generation failed: " + choice.error));
    sse += chunk_event(i, Json::object(), finish_reason(choice, pc), nullptr, matched_stop(choice));
  }
}

int64_t ChatWriter::reasoning_tokens() const {
  int64_t r = 0;
  for (const auto& pc : per_) r += pc.reasoning_tokens;
  return r;
}

std::string ChatWriter::stream_end(const std::vector<ChoiceState>& choices) {
  return stream_end_events({opt_.id, "chat.completion.chunk", opt_.created, opt_.model}, opt_.include_usage,
                           count_usage(choices, opt_.n), reasoning_tokens());
}

Json tool_calls_json(const std::vector<chat::ParsedToolCall>& calls) {
  Json out = Json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    Json c = Json::object();
    c["id"] = calls[k].id;
    c["index"] = k;
    c["type"] = "function";
    c["function"] = Json{{"name", calls[k].name}, {"arguments", calls[k].arguments}};
    out.push_back(std::move(c));
  }
  return out;
}

Json ChatWriter::body(const std::vector<ChoiceState>& choices) {
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    const auto& m = per_[i].message;
    Json msg = Json::object();
    msg["role"] = "assistant";
    msg["content"] = m.content.empty() && !m.tool_calls.empty() ? Json(nullptr) : Json(m.content);
    msg["reasoning_content"] = m.reasoning_content.empty() ? Json(nullptr) : Json(m.reasoning_content);
    if (!m.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(m.tool_calls);
    Json choice = Json::object();
    choice["index"] = i;
    choice["message"] = std::move(msg);
    choice["logprobs"] = opt_.logprobs ? chat_logprobs(c.logprobs, tok_) : Json(nullptr);
    choice["finish_reason"] = finish_reason(c, per_[i]);
    choice["matched_stop"] = matched_stop(c);
    list.push_back(std::move(choice));
  }
  Json j = response_object({opt_.id, "chat.completion", opt_.created, opt_.model}, std::move(list));
  j["usage"] = usage_json(count_usage(choices, opt_.n), reasoning_tokens());
  return j;
}

}  // namespace ds::server
