// /v1/chat/completions responses: model output goes through the chat output parser (reasoning
// parser, then tool-call parser) per choice, into `chat.completion.chunk` SSE events or one
// `chat.completion` body, with OpenAI's usage (cached tokens, reasoning tokens).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/output_parser.h"
#include "server/output_writer.h"
#include "tokenizer/tokenizer.h"

namespace ds::server {

struct ChatWriterOptions {
  std::string id;  // "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int32_t n = 1;
  bool logprobs = false;
  chat::OutputParserOptions parser;  // the same for every choice
};

class ChatWriter : public OutputWriter {
 public:
  ChatWriter(ChatWriterOptions options, size_t num_choices, const tok::Tokenizer& tokenizer);
  void on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice, std::string& sse) override;
  std::string stream_end(const std::vector<ChoiceState>& choices) override;
  Json body(const std::vector<ChoiceState>& choices) override;

 private:
  struct PerChoice {
    std::unique_ptr<chat::ChatOutputParser> parser;
    chat::ParsedMessage message;
    bool role_sent = false;
    bool content_started = false;  // content or a tool call came out
    bool saw_reasoning = false;
    int64_t pending_tokens = 0;  // output tokens before the content started
    int64_t reasoning_tokens = 0;
  };
  // One chat.completion.chunk event for choice i (the constant head is built once: this runs per token).
  std::string chunk_event(size_t i, Json delta, Json finish_reason, Json logprobs, Json matched) const;
  Json finish_reason(const ChoiceState& c, const PerChoice& pc) const;
  int64_t reasoning_tokens() const;

  ChatWriterOptions opt_;
  const tok::Tokenizer& tok_;
  std::vector<PerChoice> per_;
  std::string chunk_head_;  // {"id":...,"object":"chat.completion.chunk","created":...,"model":...,"choices":[
};

// OpenAI's tool_calls entries of a finished message.
Json tool_calls_json(const std::vector<chat::ParsedToolCall>& calls);

}  // namespace ds::server
