// /v1/responses output: model output goes through the chat output parser (reasoning, then tool
// calls) into Responses output items -- a `reasoning` item (reasoning_text content), a `message`
// item (one output_text part), `function_call` items -- either as one `response` object or as
// the Responses streaming events (response.created, response.in_progress, output_item.added,
// content_part.added, output_text.delta, reasoning_text.delta, function_call_arguments.delta,
// their .done events, output_item.done, then response.completed / incomplete / failed).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/output_parser.h"
#include "server/output_writer.h"

namespace ds::server {

struct ResponsesWriterOptions {
  std::string id;  // "resp_..."
  int64_t created = 0;
  std::string model;
  bool stream = false;
  chat::OutputParserOptions parser;
  Json echo = Json::object();  // request settings the response object repeats (instructions, tools, ...)
};

class ResponsesWriter : public OutputWriter {
 public:
  explicit ResponsesWriter(ResponsesWriterOptions options);
  void on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice, std::string& sse) override;
  std::string stream_end(const std::vector<ChoiceState>& choices) override;
  Json body(const std::vector<ChoiceState>& choices) override;

 private:
  enum class Kind { Reasoning, Message, FunctionCall };
  struct Item {
    Kind kind;
    std::string id;
    std::string text;  // reasoning text, message text or call arguments
    std::string call_id, name;
    bool done = false;
  };
  // Events are appended to `sse` only while streaming.
  void event(const char* type, Json payload, std::string& sse);
  void open(Kind kind, std::string& sse, const std::string& call_id = "", const std::string& name = "");
  void close_open(std::string& sse);
  void append(const std::string& delta, std::string& sse);
  Json item_json(const Item& it) const;
  Json response_json(const char* status, const std::vector<ChoiceState>* choices) const;
  const char* final_status(const ChoiceState& c) const;

  ResponsesWriterOptions opt_;
  std::unique_ptr<chat::ChatOutputParser> parser_;
  std::vector<Item> items_;
  int open_ = -1;  // index into items_ of the item being written, -1 when none
  bool started_ = false;
  int64_t sequence_ = 0;
  bool content_started_ = false, saw_reasoning_ = false;
  int64_t pending_tokens_ = 0, reasoning_tokens_ = 0;
  runtime::FinishReason finish_ = runtime::FinishReason::None;
  std::string error_;
};

}  // namespace ds::server
