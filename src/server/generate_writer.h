// SGLang's native /generate responses: {"text", "output_ids", "meta_info": {id, finish_reason,
// prompt_tokens, completion_tokens, cached_tokens, e2e_latency, logprobs...}}, one object per
// choice (a list when the request was a batch or n > 1). Streaming sends the text so far in every
// event, as SGLang does by default.
#pragma once
#include <string>
#include <vector>

#include "server/output_writer.h"
#include "tokenizer/tokenizer.h"
#include "util/timer.h"

namespace ds::server {

struct GenerateWriterOptions {
  bool stream = false;
  bool batch = false;  // answer with a list
  bool return_logprob = false;
  int32_t top_logprobs_num = 0;
  bool return_text_in_logprobs = false;
};

class GenerateWriter : public OutputWriter {
 public:
  GenerateWriter(GenerateWriterOptions options, const tok::Tokenizer& tokenizer);
  void on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice, std::string& sse) override;
  std::string stream_end(const std::vector<ChoiceState>& choices) override;
  Json body(const std::vector<ChoiceState>& choices) override;

 private:
  Json item(size_t i, const ChoiceState& c) const;

  GenerateWriterOptions opt_;
  const tok::Tokenizer& tok_;
  Timer clock_;
};

// SGLang's finish_reason object: {"type": "stop", "matched": id|str} / {"type": "length", "length": n} /
// {"type": "abort", "message": ...}; null while running.
Json native_finish_reason(const ChoiceState& c);

}  // namespace ds::server
