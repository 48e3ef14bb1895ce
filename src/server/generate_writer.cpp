#include "server/generate_writer.h"

#include "server/logprobs_json.h"

namespace ds::server {

Json native_finish_reason(const ChoiceState& c) {
  using runtime::FinishReason;
  switch (c.finish) {
    case FinishReason::None: return nullptr;
    case FinishReason::Stop: {
      Json j = Json{{"type", "stop"}};
      j["matched"] = matched_stop(c);
      return j;
    }
    case FinishReason::Length: return Json{{"type", "length"}, {"length", c.completion_tokens}};
    case FinishReason::Abort: return Json{{"type", "abort"}, {"message", "request aborted"}};
    case FinishReason::Error: return Json{{"type", "abort"}, {"message", c.error}};
  }
  return nullptr;
}

GenerateWriter::GenerateWriter(GenerateWriterOptions options, const tok::Tokenizer& tokenizer)
    : opt_(options), tok_(tokenizer) {}

Json GenerateWriter::item(size_t i, const ChoiceState& c) const {
  Json meta = Json::object();
  meta["id"] = c.engine_id;
  meta["finish_reason"] = native_finish_reason(c);
  meta["prompt_tokens"] = c.prompt_tokens;
  meta["completion_tokens"] = c.completion_tokens;
  meta["cached_tokens"] = c.cached_tokens;
  meta["e2e_latency"] = c.finished() ? c.finish_s : clock_.seconds();
  if (c.spec_verify_ct > 0) {  // speculative decoding (SGLang's fields)
    meta["spec_verify_ct"] = c.spec_verify_ct;
    meta["spec_accept_length"] = double(c.spec_accept_tokens) / c.spec_verify_ct;
    meta["spec_accept_token_num"] = c.spec_accept_tokens - c.spec_verify_ct;  // accepted drafts
    meta["spec_draft_token_num"] = c.spec_draft_tokens;
  }
  if (c.jump_forward_tokens > 0) meta["jump_forward_tokens"] = c.jump_forward_tokens;  // dsserve's own
  if (opt_.return_logprob) {
    meta["output_token_logprobs"] = native_token_logprobs(c.logprobs, tok_, opt_.return_text_in_logprobs);
    if (opt_.top_logprobs_num > 0)
      meta["output_top_logprobs"] = native_top_logprobs(c.logprobs, tok_, opt_.return_text_in_logprobs);
  }
  Json j = Json::object();
  j["text"] = c.text;
  j["output_ids"] = c.token_ids;
  j["meta_info"] = std::move(meta);
  if (opt_.batch) j["index"] = i;
  return j;
}

void GenerateWriter::on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice,
                              std::string& sse) {
  if (!opt_.stream) return;
  if (delta.token_ids.empty() && delta.text.empty() && !delta.finished) return;
  sse += sse_event(item(i, choice));
}

std::string GenerateWriter::stream_end(const std::vector<ChoiceState>&) { return kSseDone; }

Json GenerateWriter::body(const std::vector<ChoiceState>& choices) {
  if (!opt_.batch) return item(0, choices.at(0));
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) list.push_back(item(i, choices[i]));
  return list;
}

}  // namespace ds::server
