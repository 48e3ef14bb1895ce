// /v1/completions responses: `text_completion` SSE chunks or one body; choice k of prompt p has
// index p * n + k, as OpenAI numbers them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "server/output_writer.h"
#include "tokenizer/tokenizer.h"

namespace ds::server {

struct CompletionWriterOptions {
  std::string id;  // "cmpl-..."
  int64_t created = 0;
  std::string model;
  bool stream = false;
  bool include_usage = false;
  int32_t n = 1;
  bool logprobs = false;
  std::vector<std::string> echo;  // per choice: the prompt text to put first (echo), or empty
};

class CompletionWriter : public OutputWriter {
 public:
  CompletionWriter(CompletionWriterOptions options, const tok::Tokenizer& tokenizer);
  void on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice, std::string& sse) override;
  std::string stream_end(const std::vector<ChoiceState>& choices) override;
  Json body(const std::vector<ChoiceState>& choices) override;

 private:
  Json chunk(size_t i, std::string text, Json logprobs, const ChoiceState* finished) const;
  std::string echo_of(size_t i) const { return i < opt_.echo.size() ? opt_.echo[i] : std::string(); }

  CompletionWriterOptions opt_;
  const tok::Tokenizer& tok_;
  std::vector<size_t> text_sent_;  // bytes of text streamed per choice (for text_offset)
};

}  // namespace ds::server
