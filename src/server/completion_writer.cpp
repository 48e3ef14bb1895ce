#include "server/completion_writer.h"

#include "server/api_error.h"
#include "server/logprobs_json.h"

namespace ds::server {

CompletionWriter::CompletionWriter(CompletionWriterOptions options, const tok::Tokenizer& tokenizer)
    : opt_(std::move(options)), tok_(tokenizer) {}

Json CompletionWriter::chunk(size_t i, std::string text, Json logprobs, const ChoiceState* finished) const {
  Json choice = Json::object();
  choice["index"] = i;
  choice["text"] = std::move(text);
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = finished ? openai_finish_reason(*finished) : Json(nullptr);
  if (finished) choice["matched_stop"] = matched_stop(*finished);
  Json j = response_object({opt_.id, "text_completion", opt_.created, opt_.model}, Json::array({std::move(choice)}));
  if (opt_.include_usage) j["usage"] = nullptr;
  return j;
}

void CompletionWriter::on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice,
                                std::string& sse) {
  if (!opt_.stream) return;
  if (text_sent_.size() <= i) text_sent_.resize(i + 1, std::string::npos);
  if (text_sent_[i] == std::string::npos) {  // first delivery of this choice
    text_sent_[i] = 0;
    if (std::string e = echo_of(i); !e.empty()) {
      text_sent_[i] = e.size();
      sse += sse_event(chunk(i, e, nullptr, nullptr));
    }
  }
  Json lp = opt_.logprobs && !delta.logprobs.empty() ? completion_logprobs(delta.logprobs, tok_, text_sent_[i])
                                                     : Json(nullptr);
  if (!delta.text.empty() || !lp.is_null()) sse += sse_event(chunk(i, delta.text, std::move(lp), nullptr));
  text_sent_[i] += delta.text.size();
  if (delta.finished) {
    if (choice.finish == runtime::FinishReason::Error)
      sse += sse_event(error_body(500, "generation failed: " + choice.error));
    sse += sse_event(chunk(i, "", nullptr, &choice));
  }
}

std::string CompletionWriter::stream_end(const std::vector<ChoiceState>& choices) {
  return stream_end_events({opt_.id, "text_completion", opt_.created, opt_.model}, opt_.include_usage,
                           count_usage(choices, opt_.n), 0);
}

Json CompletionWriter::body(const std::vector<ChoiceState>& choices) {
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    std::string echo = echo_of(i);
    Json choice = Json::object();
    choice["index"] = i;
    choice["text"] = echo + c.text;
    choice["logprobs"] = opt_.logprobs ? completion_logprobs(c.logprobs, tok_, echo.size()) : Json(nullptr);
    choice["finish_reason"] = openai_finish_reason(c);
    choice["matched_stop"] = matched_stop(c);
    list.push_back(std::move(choice));
  }
  Json j = response_object({opt_.id, "text_completion", opt_.created, opt_.model}, std::move(list));
  j["usage"] = usage_json(count_usage(choices, opt_.n), 0);
  return j;
}

}  // namespace ds::server
