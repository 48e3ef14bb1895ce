// `bench serving` without --tokenizer: sglang.bench_serving falls back to the served model's
// tokenizer. We ask the server which one it serves (GET /get_model_info: tokenizer_path, then
// model_path; GET /v1/models: root) and find it on this machine: the path itself, or a Hugging
// Face hub name in the local HF cache. Nothing is downloaded.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "bench/http_client.h"

namespace ds::bench {

struct ServerTokenizerLookup {
  std::vector<std::string> names;  // what the server said, in the order tried (may be empty)
  std::optional<std::string> local_path;  // a directory or file holding tokenizer.json
  // Why nothing was found, in words for the user ("" when local_path is set).
  std::string why_not;
};

// Where a tokenizer name resolves on this machine: a tokenizer.json file, a directory holding
// one, or `org/name` in $HF_HUB_CACHE / $HF_HOME/hub / ~/.cache/huggingface/hub (newest snapshot).
std::optional<std::string> resolve_local_tokenizer(const std::string& name);

// Asks the server at `url` (the API key, as for every bench request, from $OPENAI_API_KEY).
ServerTokenizerLookup find_server_tokenizer(const Url& url);

}  // namespace ds::bench
