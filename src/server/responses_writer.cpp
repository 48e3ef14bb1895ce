#include "server/responses_writer.h"

#include "server/request_helpers.h"

namespace ds::server {

ResponsesWriter::ResponsesWriter(ResponsesWriterOptions options)
    : opt_(std::move(options)), parser_(std::make_unique<chat::ChatOutputParser>(opt_.parser)) {}

void ResponsesWriter::event(const char* type, Json payload, std::string& sse) {
  if (!opt_.stream) return;
  Json j = Json::object();
  j["type"] = type;
  j["sequence_number"] = sequence_++;
  for (auto it = payload.begin(); it != payload.end(); ++it) j[it.key()] = std::move(it.value());
  sse += "event: ";
  sse += type;
  sse += "\ndata: ";
  sse += dump(j);
  sse += "\n\n";
}

Json ResponsesWriter::item_json(const Item& it) const {
  const bool incomplete = !it.done || finish_ == runtime::FinishReason::Length;
  Json j = Json::object();
  j["id"] = it.id;
  switch (it.kind) {
    case Kind::Reasoning:
      j["type"] = "reasoning";
      j["summary"] = Json::array();
      j["content"] = Json::array({{{"type", "reasoning_text"}, {"text", it.text}}});
      break;
    case Kind::Message:
      j["type"] = "message";
      j["status"] = incomplete ? "incomplete" : "completed";
      j["role"] = "assistant";
      j["content"] = Json::array(
          {{{"type", "output_text"}, {"text", it.text}, {"annotations", Json::array()}, {"logprobs", Json::array()}}});
      break;
    case Kind::FunctionCall:
      j["type"] = "function_call";
      j["status"] = incomplete ? "incomplete" : "completed";
      j["call_id"] = it.call_id;
      j["name"] = it.name;
      j["arguments"] = it.text;
      break;
  }
  return j;
}

void ResponsesWriter::open(Kind kind, std::string& sse, const std::string& call_id, const std::string& name) {
  close_open(sse);
  const char* prefix = kind == Kind::Reasoning ? "rs_" : kind == Kind::Message ? "msg_" : "fc_";
  items_.push_back(Item{kind, new_request_id(prefix), "", call_id, name, false});
  open_ = int(items_.size()) - 1;
  Json added = item_json(items_.back());
  if (kind == Kind::Reasoning) added["content"] = Json::array();
  if (kind == Kind::Message) added["content"] = Json::array();
  added["status"] = "in_progress";
  event("response.output_item.added", {{"output_index", open_}, {"item", std::move(added)}}, sse);
  if (kind == Kind::Message)
    event("response.content_part.added",
          {{"item_id", items_.back().id},
           {"output_index", open_},
           {"content_index", 0},
           {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}}}},
          sse);
}

void ResponsesWriter::append(const std::string& delta, std::string& sse) {
  Item& it = items_[size_t(open_)];
  it.text += delta;
  const char* type = it.kind == Kind::Reasoning ? "response.reasoning_text.delta"
                     : it.kind == Kind::Message ? "response.output_text.delta"
                                                : "response.function_call_arguments.delta";
  Json p = {{"item_id", it.id}, {"output_index", open_}};
  if (it.kind != Kind::FunctionCall) p["content_index"] = 0;
  p["delta"] = delta;
  if (it.kind == Kind::Message) p["logprobs"] = Json::array();
  event(type, std::move(p), sse);
}

void ResponsesWriter::close_open(std::string& sse) {
  if (open_ < 0) return;
  Item& it = items_[size_t(open_)];
  it.done = true;
  Json head = {{"item_id", it.id}, {"output_index", open_}};
  if (it.kind == Kind::Reasoning) {
    Json p = head;
    p["content_index"] = 0;
    p["text"] = it.text;
    event("response.reasoning_text.done", std::move(p), sse);
  } else if (it.kind == Kind::Message) {
    Json p = head;
    p["content_index"] = 0;
    p["text"] = it.text;
    p["logprobs"] = Json::array();
    event("response.output_text.done", p, sse);
    p.erase("text");
    p.erase("logprobs");
    p["part"] = {{"type", "output_text"}, {"text", it.text}, {"annotations", Json::array()}};
    event("response.content_part.done", std::move(p), sse);
  } else {
    Json p = head;
    p["name"] = it.name;
    p["arguments"] = it.text;
    event("response.function_call_arguments.done", std::move(p), sse);
  }
  event("response.output_item.done", {{"output_index", open_}, {"item", item_json(it)}}, sse);
  open_ = -1;
}

void ResponsesWriter::on_delta(size_t, const runtime::RequestOutput& delta, const ChoiceState& choice,
                               std::string& sse) {
  if (!started_) {
    started_ = true;
    event("response.created", {{"response", response_json("in_progress", nullptr)}}, sse);
    event("response.in_progress", {{"response", response_json("in_progress", nullptr)}}, sse);
  }
  chat::ParsedDelta d = parser_->feed(delta.text);
  if (delta.finished) {
    chat::ParsedDelta last = parser_->finish();
    d.reasoning_content += last.reasoning_content;
    d.content += last.content;
    for (auto& c : last.tool_calls) d.tool_calls.push_back(std::move(c));
  }
  // Reasoning tokens as the chat endpoint counts them: output tokens until the content starts.
  if (!d.reasoning_content.empty()) saw_reasoning_ = true;
  if (!content_started_) {
    if (d.content.empty() && d.tool_calls.empty()) pending_tokens_ += int64_t(delta.token_ids.size());
    else content_started_ = true;
    if (saw_reasoning_) reasoning_tokens_ = pending_tokens_;
  }

  if (!d.reasoning_content.empty()) {
    if (open_ < 0 || items_[size_t(open_)].kind != Kind::Reasoning) open(Kind::Reasoning, sse);
    append(d.reasoning_content, sse);
  }
  if (!d.content.empty()) {
    if (open_ < 0 || items_[size_t(open_)].kind != Kind::Message) open(Kind::Message, sse);
    append(d.content, sse);
  }
  for (const auto& c : d.tool_calls) {
    if (c.name) open(Kind::FunctionCall, sse, c.id.value_or(chat::make_tool_call_id()), *c.name);
    if (!c.arguments.empty() && open_ >= 0 && items_[size_t(open_)].kind == Kind::FunctionCall) append(c.arguments, sse);
  }
  if (delta.finished) {
    finish_ = choice.finish;
    error_ = choice.error;
    close_open(sse);
  }
}

const char* ResponsesWriter::final_status(const ChoiceState& c) const {
  switch (c.finish) {
    case runtime::FinishReason::Length:
    case runtime::FinishReason::Abort: return "incomplete";
    case runtime::FinishReason::Error: return "failed";
    default: return "completed";
  }
}

Json ResponsesWriter::response_json(const char* status, const std::vector<ChoiceState>* choices) const {
  Json j = Json::object();
  j["id"] = opt_.id;
  j["object"] = "response";
  j["created_at"] = opt_.created;
  j["status"] = status;
  j["background"] = false;
  j["error"] = nullptr;
  j["incomplete_details"] = nullptr;
  if (std::string(status) == "incomplete")
    j["incomplete_details"] = {{"reason", finish_ == runtime::FinishReason::Abort ? "abort" : "max_output_tokens"}};
  if (std::string(status) == "failed") j["error"] = {{"code", "server_error"}, {"message", "generation failed: " + error_}};
  j["model"] = opt_.model;
  Json output = Json::array();
  if (choices)
    for (const auto& it : items_) output.push_back(item_json(it));
  j["output"] = std::move(output);
  j["previous_response_id"] = nullptr;
  j["store"] = false;
  for (auto it = opt_.echo.begin(); it != opt_.echo.end(); ++it) j[it.key()] = it.value();
  if (choices && !choices->empty()) {
    UsageCounts u = count_usage(*choices, 1);
    j["usage"] = {{"input_tokens", u.prompt},
                  {"input_tokens_details", {{"cached_tokens", u.cached}}},
                  {"output_tokens", u.completion},
                  {"output_tokens_details", {{"reasoning_tokens", reasoning_tokens_}}},
                  {"total_tokens", u.prompt + u.completion}};
  } else {
    j["usage"] = nullptr;
  }
  return j;
}

std::string ResponsesWriter::stream_end(const std::vector<ChoiceState>& choices) {
  std::string sse;
  const char* status = choices.empty() ? "failed" : final_status(choices[0]);
  const std::string s = status;
  const char* type = s == "completed"    ? "response.completed"
                     : s == "incomplete" ? "response.incomplete"
                                         : "response.failed";
  event(type, {{"response", response_json(status, &choices)}}, sse);
  return sse;
}

Json ResponsesWriter::body(const std::vector<ChoiceState>& choices) {
  return response_json(choices.empty() ? "failed" : final_status(choices[0]), &choices);
}

}  // namespace ds::server
