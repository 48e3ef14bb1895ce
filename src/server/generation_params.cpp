#include "server/generation_params.h"

#include <fstream>

#include "server/api_error.h"
#include "server/json_fields.h"
#include "util/error.h"

namespace ds::server {
namespace {

constexpr int64_t kMaxN = 128;           // OpenAI's limit on n
constexpr int64_t kMaxTopLogprobs = 20;  // OpenAI's limit on top_logprobs

// The fields both APIs share: the SamplingParams knobs, stops, flags.
void read_common(const Fields& f, const SamplingDefaults& d, GenerationParams& p) {
  auto& s = p.sampling;
  s.temperature = float(f.number("temperature").value_or(d.temperature.value_or(1.0f)));
  s.top_p = float(f.number("top_p").value_or(d.top_p.value_or(1.0f)));
  s.top_k = int32_t(f.integer("top_k", INT32_MIN, INT32_MAX).value_or(d.top_k.value_or(-1)));
  s.min_p = float(f.number("min_p").value_or(d.min_p.value_or(0.0f)));
  s.repetition_penalty = float(f.number("repetition_penalty").value_or(d.repetition_penalty.value_or(1.0f)));
  s.frequency_penalty = float(f.number("frequency_penalty").value_or(0.0));
  s.presence_penalty = float(f.number("presence_penalty").value_or(0.0));
  s.ignore_eos = f.boolean("ignore_eos").value_or(false);
  if (auto stop = f.strings("stop")) {
    for (size_t i = 0; i < stop->size(); ++i)
      if ((*stop)[i].empty()) bad_param(f.name("stop"), f.name("stop") + " must not hold an empty string");
    p.stop = std::move(*stop);
  }
  if (auto ids = f.int_list("stop_token_ids", 0, INT32_MAX)) p.stop_token_ids = std::move(*ids);
  p.skip_special_tokens = f.boolean("skip_special_tokens").value_or(true);
  p.no_stop_trim = f.boolean("no_stop_trim").value_or(false);
  p.n = int32_t(f.integer("n", 1, kMaxN).value_or(1));
  // Structured outputs: regex / ebnf / json_schema here, and response_format in the OpenAI bodies.
  p.grammar = read_grammar_fields(f, f.where.empty());
  // Structural tags, stop regexes and logit biases are not implemented: say so.
  for (const char* key : {"structural_tag", "stop_regex", "custom_logit_processor"})
    if (f.get(key)) bad_param(f.name(key), f.name(key) + " is not supported by this server");
  if (const Json* lb = f.get("logit_bias"); lb && !(lb->is_object() && lb->empty()))
    bad_param(f.name("logit_bias"), f.name("logit_bias") + " is not supported by this server");
}

void check_sampling(const GenerationParams& p, const std::string& where) {
  try {
    p.sampling.validate();
  } catch (const ds::Error& e) {
    std::string msg = e.what();
    std::string field = msg.substr(0, msg.find(' '));  // the sampler's messages start with the name
    bad_param(where.empty() ? field : where + "." + field, where.empty() ? msg : where + "." + msg);
  }
}

uint64_t seed_of(int64_t v) { return uint64_t(v); }  // any Python int the client sends, as 64 bits

}  // namespace

SamplingDefaults load_sampling_defaults(const std::filesystem::path& model_dir) {
  SamplingDefaults d;
  auto file = model_dir / "generation_config.json";
  std::ifstream in(file);
  if (!in) return d;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail("{}: {}", file.string(), e.what());
  }
  auto num = [&](const char* k) -> std::optional<float> {
    if (j.contains(k) && j[k].is_number()) return j[k].get<float>();
    return std::nullopt;
  };
  d.temperature = num("temperature");
  d.top_p = num("top_p");
  d.min_p = num("min_p");
  d.repetition_penalty = num("repetition_penalty");
  if (j.contains("top_k") && j["top_k"].is_number_integer()) {
    int k = j["top_k"].get<int>();
    if (k > 0) d.top_k = k;  // HF's 0 / 50 "unset" conventions: only a positive value means something
  }
  // do_sample = false means greedy in HF.
  if (j.contains("do_sample") && j["do_sample"].is_boolean() && !j["do_sample"].get<bool>()) d.temperature = 0.0f;
  return d;
}

GenerationParams parse_openai_params(const Json& body, OpenAiApi api, const SamplingDefaults& defaults) {
  Fields f{body, ""};
  GenerationParams p;
  read_common(f, defaults, p);
  if (auto seed = f.integer("seed")) p.sampling.seed = seed_of(*seed);

  // max_completion_tokens (chat) wins over the deprecated max_tokens.
  p.max_new_tokens = f.integer("max_tokens", 1);
  if (api == OpenAiApi::Chat)
    if (auto mct = f.integer("max_completion_tokens", 1)) p.max_new_tokens = mct;

  if (api == OpenAiApi::Chat) {
    bool logprobs = f.boolean("logprobs").value_or(false);
    auto top = f.integer("top_logprobs", 0, kMaxTopLogprobs);
    if (top && !logprobs) bad_param("top_logprobs", "top_logprobs needs logprobs set to true");
    p.sampling.logprobs = logprobs;
    p.sampling.top_logprobs = int32_t(top.value_or(0));
  } else if (auto lp = f.integer("logprobs", 0, kMaxTopLogprobs)) {
    p.sampling.logprobs = true;
    p.sampling.top_logprobs = int32_t(*lp);
  }

  if (auto min_tokens = f.integer("min_tokens", 0); min_tokens && *min_tokens > 0)
    bad_param("min_tokens", "min_tokens is not supported by this server");
  if (auto best_of = f.integer("best_of", 1); best_of && *best_of != p.n)
    bad_param("best_of", "best_of other than n is not supported by this server");
  if (auto suffix = f.string("suffix"); suffix && !suffix->empty())
    bad_param("suffix", "suffix is not supported by this server");
  check_sampling(p, "");
  return p;
}

GenerationParams parse_native_params(const Json& sp, const SamplingDefaults& defaults) {
  if (!sp.is_object()) bad_param("sampling_params", "sampling_params must be an object");
  static const char* const known[] = {"max_new_tokens",
                                      "min_new_tokens",
                                      "stop",
                                      "stop_token_ids",
                                      "temperature",
                                      "top_p",
                                      "top_k",
                                      "min_p",
                                      "frequency_penalty",
                                      "presence_penalty",
                                      "repetition_penalty",
                                      "ignore_eos",
                                      "skip_special_tokens",
                                      "no_stop_trim",
                                      "n",
                                      "sampling_seed",
                                      "seed",
                                      "spaces_between_special_tokens",
                                      "regex",
                                      "ebnf",
                                      "json_schema",
                                      "structural_tag",
                                      "stop_regex",
                                      "logit_bias",
                                      "custom_params",
                                      "custom_logit_processor"};
  for (auto it = sp.begin(); it != sp.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok)
      bad_param("sampling_params." + it.key(), "sampling_params." + it.key() + " is not a known sampling parameter");
  }
  Fields f{sp, "sampling_params"};
  GenerationParams p;
  read_common(f, defaults, p);
  auto seed = f.integer("sampling_seed");
  if (!seed) seed = f.integer("seed");
  if (seed) p.sampling.seed = seed_of(*seed);
  p.max_new_tokens = f.integer("max_new_tokens", 0);
  if (auto mn = f.integer("min_new_tokens", 0); mn && *mn > 0)
    bad_param("sampling_params.min_new_tokens", "sampling_params.min_new_tokens is not supported by this server");
  check_sampling(p, "sampling_params");
  return p;
}

}  // namespace ds::server
