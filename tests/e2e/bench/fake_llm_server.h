// A scripted stand-in for an SGLang/OpenAI-compatible server, for tests and the client benchmark.
// Serves /generate, /v1/completions, /v1/chat/completions (streaming SSE or one JSON body),
// /v1/models and /get_server_info on 127.0.0.1, from its own thread, replying at once unless a
// per-piece delay is scripted.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ds::bench::testing {

struct FakeReply {
  int status = 200;
  std::vector<std::string> pieces;  // output text, one piece per token (one SSE event each)
  std::string reasoning;            // chat only: sent as reasoning_content before the content
  int prompt_tokens = -1;           // -1: count whitespace-separated words of the prompt
  double piece_delay_s = 0;         // pause before each streamed piece
  std::string error_body = "scripted failure";
};

// Called on the server thread with the endpoint path and the parsed request body.
using Responder = std::function<FakeReply(const std::string& path, const nlohmann::json& body)>;

// The default: max_new_tokens / max_tokens / max_completion_tokens pieces of "tok ".
FakeReply default_reply(const std::string& path, const nlohmann::json& body);

class FakeLlmServer {
 public:
  explicit FakeLlmServer(Responder responder = nullptr, std::optional<double> accept_length = std::nullopt);
  ~FakeLlmServer();
  uint16_t port() const;
  std::string url() const;   // http://127.0.0.1:PORT
  uint64_t requests() const;  // completed generation requests
  int max_inflight() const;   // most generation requests open at once
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ds::bench::testing
