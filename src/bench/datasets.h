// The serving benchmark's datasets, built as sglang.bench_serving builds them: sharegpt,
// random (ShareGPT text cut/repeated to the sampled lengths), random-ids (consecutive vocabulary ids)
// and generated-shared-prefix (random system prompts shared by groups of questions).
// Random draws use std::mt19937_64 seeded by --seed, so the streams differ from numpy's.
#pragma once
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/tokenizer.h"
#include "bench/types.h"

namespace ds::bench {

inline constexpr const char* kShareGptUrl =
    "https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/main/"
    "ShareGPT_V3_unfiltered_cleaned_split.json";
inline constexpr const char* kShareGptCache = "/tmp/ShareGPT_V3_unfiltered_cleaned_split.json";

struct DatasetOptions {
  std::string name = "sharegpt";
  std::string path;
  int num_prompts = 1000;
  int random_input_len = 1024, random_output_len = 1024;
  double random_range_ratio = 0.0;
  std::optional<int> sharegpt_output_len, sharegpt_context_len;
  int gsp_num_groups = 64, gsp_prompts_per_group = 16, gsp_system_prompt_len = 2048, gsp_question_len = 128,
      gsp_output_len = 256;
  double gsp_range_ratio = 1.0;
  bool apply_chat_template = false;
};

// randint(max(int(full * ratio), 1), full + 1) drawn n times (sglang's compute_random_lens).
std::vector<int> random_lens(int full, double ratio, int n, std::mt19937_64& rng);

// The first two turns of every conversation with at least two, from a ShareGPT JSON file.
std::vector<std::pair<std::string, std::string>> read_sharegpt(const std::string& path);

// DeepSeek-V3.x chat formatting of one user turn with the generation prompt (no BOS, as sglang
// strips it), standing in for tokenizer.apply_chat_template.
std::string apply_chat_template(const std::string& prompt);

// tokenizer may be null only for sharegpt (lengths are then estimated and the server's counts used).
std::vector<DatasetRow> load_dataset(const DatasetOptions& opt, const TextTokenizer* tokenizer, std::mt19937_64& rng);

}  // namespace ds::bench
