#include "bench/datasets.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "bench/download.h"
#include "util/error.h"

namespace ds::bench {

using nlohmann::json;

std::vector<int> random_lens(int full, double ratio, int n, std::mt19937_64& rng) {
  int lo = std::max(static_cast<int>(full * ratio), 1);
  DS_CHECK(lo <= full, "length range [{}, {}] is empty", lo, full);
  std::uniform_int_distribution<int> d(lo, full);
  std::vector<int> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<std::pair<std::string, std::string>> read_sharegpt(const std::string& path) {
  std::ifstream in(path);
  DS_CHECK(in.good(), "cannot open ShareGPT file {}", path);
  json data = json::parse(in, nullptr, false);
  DS_CHECK(!data.is_discarded() && data.is_array(), "{} is not a ShareGPT JSON list", path);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : data) {
    const json* conv = nullptr;
    if (item.contains("conversations")) conv = &item["conversations"];
    else if (item.contains("conversation")) conv = &item["conversation"];
    if (!conv || !conv->is_array() || conv->size() < 2) continue;
    out.emplace_back((*conv)[0].value("value", ""), (*conv)[1].value("value", ""));
  }
  return out;
}

std::string apply_chat_template(const std::string& prompt) {
  return "<｜User｜>" + prompt + "<｜Assistant｜></think>";
}

namespace {

std::string sharegpt_path(const std::string& given) {
  if (!given.empty()) {
    DS_CHECK(std::filesystem::exists(given), "--dataset-path {} does not exist", given);
    return given;
  }
  return ensure_file(kShareGptCache, kShareGptUrl, "the ShareGPT dataset (or pass --dataset-path)");
}

// Without a tokenizer, about 4 bytes of English text make one token.
int estimate_tokens(const std::string& s) { return static_cast<int>((s.size() + 3) / 4); }

void print_totals(const std::vector<DatasetRow>& rows) {
  long in = 0, out = 0;
  for (const auto& r : rows) in += r.prompt_len, out += r.output_len;
  std::printf("#Input tokens: %ld\n#Output tokens: %ld\n", in, out);
}

std::vector<DatasetRow> sharegpt(const DatasetOptions& o, const TextTokenizer* tok, std::mt19937_64& rng) {
  if (o.sharegpt_output_len && *o.sharegpt_output_len < 4) fail("output_len too small");
  auto convs = read_sharegpt(sharegpt_path(o.path));
  std::shuffle(convs.begin(), convs.end(), rng);
  if (!tok) std::printf("note: no tokenizer; ShareGPT lengths are estimated at 4 bytes per token\n");
  std::vector<DatasetRow> rows;
  for (auto& [prompt, completion] : convs) {
    if (static_cast<int>(rows.size()) == o.num_prompts) break;
    if (o.apply_chat_template) prompt = apply_chat_template(prompt);
    int prompt_len = tok ? static_cast<int>(tok->encode(prompt).size()) : estimate_tokens(prompt);
    int output_len = o.sharegpt_output_len ? *o.sharegpt_output_len
                                           : (tok ? static_cast<int>(tok->encode(completion).size()) : estimate_tokens(completion));
    if (prompt_len < 2 || output_len < 2) continue;
    if (o.sharegpt_context_len && prompt_len + output_len > *o.sharegpt_context_len) continue;
    rows.push_back({prompt, tok ? prompt_len : -1, output_len});
  }
  print_totals(rows);
  return rows;
}

std::vector<DatasetRow> random_ids(const DatasetOptions& o, const TextTokenizer& tok, const std::vector<int>& in_lens,
                                   const std::vector<int>& out_lens, std::mt19937_64& rng) {
  int vocab = tok.vocab_size();
  std::uniform_int_distribution<int> off(0, vocab - 1);
  std::vector<DatasetRow> rows;
  for (int i = 0; i < o.num_prompts; ++i) {
    int offset = off(rng);
    std::vector<int32_t> ids(in_lens[i]);
    for (int j = 0; j < in_lens[i]; ++j) ids[j] = static_cast<int32_t>((int64_t(offset) + i + j) % vocab);
    rows.push_back({tok.decode(ids), in_lens[i], out_lens[i]});
  }
  return rows;
}

std::vector<DatasetRow> random_text(const DatasetOptions& o, const TextTokenizer& tok, const std::vector<int>& in_lens,
                                    const std::vector<int>& out_lens, std::mt19937_64& rng, const std::string& path) {
  auto convs = read_sharegpt(path);
  std::shuffle(convs.begin(), convs.end(), rng);
  std::vector<DatasetRow> rows;
  for (const auto& conv : convs) {
    size_t i = rows.size();
    if (static_cast<int>(i) == o.num_prompts) break;
    auto ids = tok.encode(conv.first);
    if (ids.empty()) continue;
    // Cut to the sampled length, or repeat the prompt's ids until it is long enough.
    std::vector<int32_t> cut;
    cut.reserve(in_lens[i]);
    while (static_cast<int>(cut.size()) < in_lens[i])
      for (size_t k = 0; k < ids.size() && static_cast<int>(cut.size()) < in_lens[i]; ++k) cut.push_back(ids[k]);
    rows.push_back({tok.decode(cut), in_lens[i], out_lens[i]});
  }
  DS_CHECK(static_cast<int>(rows.size()) == o.num_prompts, "{} has only {} usable prompts for --num-prompts {}", path,
           rows.size(), o.num_prompts);
  return rows;
}

// sglang's gen_prompt: token ids drawn uniformly (with replacement) from the vocabulary, decoded.
std::string gen_prompt(const TextTokenizer& tok, int n, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> d(0, tok.vocab_size() - 1);
  std::vector<int32_t> ids(n);
  for (auto& x : ids) x = d(rng);
  return tok.decode(ids);
}

std::vector<DatasetRow> shared_prefix(const DatasetOptions& o, const TextTokenizer& tok, std::mt19937_64& rng) {
  int groups = o.gsp_num_groups, per = o.gsp_prompts_per_group;
  auto sys_lens = random_lens(o.gsp_system_prompt_len, o.gsp_range_ratio, groups, rng);
  auto q_lens = random_lens(o.gsp_question_len, o.gsp_range_ratio, groups * per, rng);
  auto out_lens = random_lens(o.gsp_output_len, o.gsp_range_ratio, groups * per, rng);
  std::vector<std::string> sys;
  for (int g = 0; g < groups; ++g) sys.push_back(gen_prompt(tok, sys_lens[g], rng));
  std::vector<DatasetRow> rows;
  long total_in = 0, total_out = 0;
  for (int g = 0; g < groups; ++g)
    for (int p = 0; p < per; ++p) {
      int k = g * per + p;
      std::string full = sys[g] + "\n\n" + gen_prompt(tok, q_lens[k], rng);
      int len = static_cast<int>(tok.encode(full).size());
      rows.push_back({full, len, out_lens[k]});
      total_in += len;
      total_out += out_lens[k];
    }
  std::shuffle(rows.begin(), rows.end(), rng);
  std::printf("\nGenerated shared prefix dataset statistics:\nNumber of groups: %d\nPrompts per group: %d\n"
              "Total prompts: %zu\nTotal input tokens: %ld\nTotal output tokens: %ld\n",
              groups, per, rows.size(), total_in, total_out);
  return rows;
}

}  // namespace

std::vector<DatasetRow> load_dataset(const DatasetOptions& o, const TextTokenizer* tok, std::mt19937_64& rng) {
  if (o.name == "sharegpt") return sharegpt(o, tok, rng);
  if (o.name != "random" && o.name != "random-ids" && o.name != "generated-shared-prefix")
    fail("unknown --dataset-name '{}' (sharegpt, random, random-ids, generated-shared-prefix)", o.name);
  if (!tok) fail("--dataset-name {} needs a tokenizer: pass --tokenizer DIR (a directory with tokenizer.json)", o.name);
  if (o.name == "generated-shared-prefix") return shared_prefix(o, *tok, rng);
  auto in_lens = random_lens(o.random_input_len, o.random_range_ratio, o.num_prompts, rng);
  auto out_lens = random_lens(o.random_output_len, o.random_range_ratio, o.num_prompts, rng);
  std::vector<DatasetRow> rows;
  if (o.name == "random") {
    // sglang samples the text from ShareGPT; without that file, fall back to vocabulary ids.
    std::string path = !o.path.empty() ? o.path : (std::filesystem::exists(kShareGptCache) ? kShareGptCache : "");
    if (!path.empty()) {
      rows = random_text(o, *tok, in_lens, out_lens, rng, path);
    } else {
      std::printf("note: no ShareGPT file (--dataset-path or %s): random prompts use vocabulary ids\n", kShareGptCache);
      rows = random_ids(o, *tok, in_lens, out_lens, rng);
    }
  } else {
    rows = random_ids(o, *tok, in_lens, out_lens, rng);
  }
  print_totals(rows);
  return rows;
}

}  // namespace ds::bench
