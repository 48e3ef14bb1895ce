// How one endpoint turns engine outputs into its response: SSE events while streaming, one JSON
// body otherwise. A GenerationJob owns one writer and calls it on the connection's executor.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/json.h"

namespace ds::server {

// One choice (one engine request) of a response, as delivered so far.
struct ChoiceState {
  std::string engine_id;
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<runtime::TokenLogprob> logprobs;
  runtime::FinishReason finish = runtime::FinishReason::None;
  std::optional<int32_t> matched_token;
  std::optional<std::string> matched_str;
  std::string error;
  int32_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  int32_t spec_verify_ct = 0, spec_accept_tokens = 0, spec_draft_tokens = 0;  // speculative decoding
  int32_t jump_forward_tokens = 0;  // output tokens the grammar forced (jump-forward decoding)
  double first_token_s = -1;  // since the request arrived; -1 before the first token
  double finish_s = -1;

  bool finished() const { return finish != runtime::FinishReason::None; }
  // Folds a delivery in.
  void add(const runtime::RequestOutput& out, double now_s);
};

class OutputWriter {
 public:
  virtual ~OutputWriter() = default;
  // Choice i got `delta` (already folded into `choice`). While streaming, append its SSE events.
  virtual void on_delta(size_t i, const runtime::RequestOutput& delta, const ChoiceState& choice, std::string& sse) = 0;
  // Streaming: the events after every choice finished (usage chunk, "data: [DONE]").
  virtual std::string stream_end(const std::vector<ChoiceState>& choices) = 0;
  // Not streaming: the response body.
  virtual Json body(const std::vector<ChoiceState>& choices) = 0;
};

// "data: <json>\n\n"
std::string sse_event(const Json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

// SGLang/OpenAI token accounting over the choices of one response: the prompt counted once per
// distinct prompt (the first choice of each group of n), completions summed.
struct UsageCounts {
  int64_t prompt = 0, completion = 0, cached = 0;
};
UsageCounts count_usage(const std::vector<ChoiceState>& choices, int32_t n);
// OpenAI's usage object (with SGLang's top-level reasoning_tokens as well).
Json usage_json(const UsageCounts& u, int64_t reasoning_tokens);

// What every response object and chunk of one request starts with.
struct ResponseHead {
  const std::string& id;
  const char* object;  // "chat.completion", "chat.completion.chunk", "text_completion"
  int64_t created;
  const std::string& model;
};
// {"id", "object", "created", "model", "choices"} in OpenAI's order (callers add "usage").
Json response_object(const ResponseHead& head, Json choices);
// The end of a stream: with include_usage, a chunk with no choices and the usage (OpenAI's
// stream_options.include_usage), then "data: [DONE]".
std::string stream_end_events(const ResponseHead& head, bool include_usage, const UsageCounts& usage,
                              int64_t reasoning_tokens);

// "stop", "length", "abort", "error" ("" while running).
const char* finish_name(runtime::FinishReason r);
// OpenAI's finish_reason: "stop", "length", "abort" ("error" for a failed choice); null while running.
Json openai_finish_reason(const ChoiceState& c);
// SGLang's matched_stop: the stop token id, the stop string, or null.
Json matched_stop(const ChoiceState& c);

}  // namespace ds::server
