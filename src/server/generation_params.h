// Sampling and stopping parameters of a request, read from an OpenAI body (chat / completions) or
// SGLang's native `sampling_params`, with the checkpoint's generation_config.json as defaults.
// Parameters we cannot honour (structural_tag, logit_bias, ...) are refused with a 400 naming them
// rather than silently ignored. Structured-output fields are read by grammar_params.h.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "server/grammar_params.h"
#include "server/json.h"

namespace ds::server {

// generation_config.json's sampling fields (what SGLang's default `--sampling-defaults model` uses).
struct SamplingDefaults {
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int32_t> top_k;
};
// A missing file gives no defaults; a malformed one is an error naming the file.
SamplingDefaults load_sampling_defaults(const std::filesystem::path& model_dir);

struct GenerationParams {
  runtime::SamplingParams sampling;
  std::optional<int64_t> max_new_tokens;  // as given; absent: the endpoint's default (resolve_max_new_tokens)
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool skip_special_tokens = true;
  bool no_stop_trim = false;
  int32_t n = 1;
  std::optional<GrammarRequest> grammar;  // structured output (response_format, regex, ebnf, json_schema)
};

enum class OpenAiApi { Chat, Completions };

// Throws ApiError (400) naming the offending field.
GenerationParams parse_openai_params(const Json& body, OpenAiApi api, const SamplingDefaults& defaults);
GenerationParams parse_native_params(const Json& sampling_params, const SamplingDefaults& defaults);

}  // namespace ds::server
