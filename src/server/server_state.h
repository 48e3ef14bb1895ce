// What every endpoint shares: the configuration, the engine, the tokenizer, the chat encoder,
// metrics and the live-request registry. Owned by ApiServer; endpoints get a reference.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "chat/encoder.h"
#include "runtime/engine.h"
#include "server/generation_params.h"
#include "server/grammar_params.h"
#include "server/json.h"
#include "server/live_requests.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace ds::server {

struct ServerConfig {
  std::string served_model_name;  // /v1/models and the `model` of responses
  std::string model_path;         // also accepted as a model name (SGLang's default served name)
  std::optional<std::string> api_key;
  int64_t context_length = 0;     // prompt + output limit per request
  bool reasoning_parser = false;  // --reasoning-parser deepseek-v3
  std::string tool_call_parser;   // "", "deepseekv31" or "deepseekv32"
  bool enable_metrics = false;
  SamplingDefaults sampling_defaults;
  Json server_args = Json::object();  // reported by /get_server_info
  std::string version = "0.1.0";
};

struct ServerState {
  ServerConfig config;
  runtime::Engine& engine;
  const tok::Tokenizer& tokenizer;
  std::unique_ptr<chat::ChatEncoder> encoder;  // null: /v1/chat/completions answers 400
  ServerMetrics metrics;
  LiveRequests live;
  int64_t started_at = 0;  // unix seconds: the `created` of /v1/models
  std::shared_ptr<ServerGrammars> grammars = std::make_shared<ServerGrammars>();  // structured outputs
};

}  // namespace ds::server
