// What every endpoint shares: the configuration, the engine, the tokenizer, the chat encoder,
// metrics and the live-request registry. Owned by ApiServer; endpoints get a reference.
#pragma once
#include <atomic>
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
  std::string tokenizer_path;     // /get_model_info (bench serving's fallback); "" = model_path
  std::optional<std::string> api_key;
  int64_t context_length = 0;     // prompt + output limit per request
  // Token ids a client may send: the model's vocabulary (DeepSeek's embedding has 129,280 rows, its
  // tokenizer defines 128,815 ids; the ones between have no text but the model can emit them, so they
  // are valid input too). 0: the tokenizer's.
  int32_t model_vocab_size = 0;
  bool reasoning_parser = false;  // --reasoning-parser deepseek-v3
  std::string tool_call_parser;   // "", "deepseekv31" or "deepseekv32"
  bool enable_metrics = false;
  SamplingDefaults sampling_defaults;
  grammar::JsonGrammarOptions json_grammar;  // how JSON grammars are written (whitespace)
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
  std::atomic<bool> draining{false};  // shutting down: no new generation (ApiServer::begin_drain)
  std::shared_ptr<ServerGrammars> grammars = std::make_shared<ServerGrammars>(config.json_grammar);  // structured outputs
};

}  // namespace ds::server
