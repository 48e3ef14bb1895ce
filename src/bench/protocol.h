// What each --backend sends and how its response body turns into timings, following the request
// functions of sglang.bench_serving (async_request_sglang_generate, _openai_completions,
// _openai_chat_completions). Pure logic: timestamps come in as arguments, so it is testable offline.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "bench/types.h"

namespace ds::bench {

enum class Api { kGenerate, kCompletions, kChatCompletions };

struct BackendSpec {
  std::string name;
  Api api;
  std::string path;  // appended to the base URL
};

// sglang -> /generate; sglang-oai, vllm, openai -> /v1/completions;
// sglang-oai-chat, openai-chat (and vllm-chat) -> /v1/chat/completions. Throws on an unknown name.
BackendSpec backend_spec(const std::string& name);

struct RequestOptions {
  bool stream = true;
  bool ignore_eos = true;
  nlohmann::json extra_body = nlohmann::json::object();  // merged last, overriding defaults
};

std::string build_payload(Api api, const std::string& model, const DatasetRow& row, int output_len,
                          const RequestOptions& opt);

// Reads the body of one 200 response line by line (aiohttp's line iteration: strip, skip empty,
// drop a leading "data: "), recording text and timings into an output.
class ResponseReader {
 public:
  ResponseReader(Api api, bool stream, int requested_output_len, double start_time);
  // One line of the body (without its newline) received at time `now`. Throws on malformed JSON.
  void on_line(std::string_view line, double now);
  // The body ended at time `now`; fills the output (success = true).
  void finish(RequestOutput& out, double now);

 private:
  void on_json(const nlohmann::json& data, double now);
  void on_text(const std::string& piece, double now);
  Api api_;
  bool stream_;
  double st_, latency_ = 0, ttft_ = 0, most_recent_;
  std::string text_, body_;
  std::vector<double> itl_;
  std::vector<std::string> chunks_;
  int output_len_, last_output_len_ = 0, prompt_tokens_ = -1;
  bool any_line_ = false;
};

}  // namespace ds::bench
