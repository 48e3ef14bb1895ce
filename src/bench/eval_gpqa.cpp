#include "bench/eval_gpqa.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "bench/csv.h"
#include "bench/download.h"
#include "bench/eval_runner.h"
#include "bench/py_random.h"
#include "bench/serving.h"
#include "bench/stats.h"
#include "util/error.h"

namespace ds::bench {

using nlohmann::json;

std::vector<GpqaExample> read_gpqa_csv(const std::string& path) {
  CsvTable t = read_csv_file(path);
  DS_CHECK(!t.empty(), "{} is empty", path);
  const auto& head = t[0];
  auto col = [&](const std::string& name) {
    auto it = std::find(head.begin(), head.end(), name);
    DS_CHECK(it != head.end(), "{} has no '{}' column", path, name);
    return static_cast<size_t>(it - head.begin());
  };
  size_t q = col("Question"), c = col("Correct Answer"), i1 = col("Incorrect Answer 1"), i2 = col("Incorrect Answer 2"),
         i3 = col("Incorrect Answer 3");
  CsvTable body(t.begin() + 1, t.end());
  pandas_render(body);
  std::vector<GpqaExample> out;
  for (const auto& r : body) {
    DS_CHECK(r.size() > std::max({q, c, i1, i2, i3}), "{}: short row", path);
    out.push_back({r[q], r[c], {r[i1], r[i2], r[i3]}, {}});
  }
  return out;
}

std::vector<GpqaExample> gpqa_select(std::vector<GpqaExample> all, std::optional<int> num_examples) {
  PyRandom rng(0);
  std::vector<GpqaExample> ex;
  if (num_examples && *num_examples > 0) {
    DS_CHECK(static_cast<size_t>(*num_examples) <= all.size(), "--num-examples {} but the file has {} questions",
             *num_examples, all.size());
    for (size_t i : rng.sample(all.size(), *num_examples)) ex.push_back(all[i]);
  } else {
    ex = std::move(all);
  }
  for (auto& e : ex) e.permutation = rng.sample(4, 4);
  return ex;
}

std::string gpqa_prompt(const GpqaExample& ex, char& correct_letter) {
  std::vector<std::string> base = {ex.correct, ex.incorrect[0], ex.incorrect[1], ex.incorrect[2]};
  std::vector<std::string> ch;
  for (size_t i : ex.permutation) ch.push_back(base[i]);
  // choices.index(correct): the first equal text, as Python's list.index.
  correct_letter = "ABCD"[std::find(ch.begin(), ch.end(), ex.correct) - ch.begin()];
  return fmt::format(
      "Answer the following multiple choice question. The last line of your response should be of the following "
      "format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before "
      "answering.\n\n{}\n\nA) {}\nB) {}\nC) {}\nD) {}",
      ex.question, ch[0], ch[1], ch[2], ch[3]);
}

char gpqa_extract(const std::string& text) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  static const std::string word = "answer";
  for (size_t i = 0; i + word.size() <= text.size(); ++i) {
    size_t k = 0;
    while (k < word.size() && std::tolower(static_cast<unsigned char>(text[i + k])) == word[k]) ++k;
    if (k < word.size()) continue;
    size_t p = i + word.size();
    while (p < text.size() && space(text[p])) ++p;
    if (p >= text.size() || text[p] != ':') continue;
    ++p;
    while (p < text.size() && space(text[p])) ++p;
    if (p < text.size()) {
      char c = text[p];
      if ((c >= 'A' && c <= 'D') || (c >= 'a' && c <= 'd')) return c;  // (?i) also admits a-d
    }
  }
  return 0;
}

namespace {
size_t utf8_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
}  // namespace

GpqaResult run_gpqa(const GpqaOptions& opt) {
  std::string path = opt.data_path;
  if (path.empty() || !std::filesystem::exists(path))
    path = ensure_file(path.empty() ? "/tmp/gpqa_diamond.csv" : path, kGpqaUrl, "the GPQA diamond set (gpqa_diamond.csv)");
  auto examples = gpqa_select(read_gpqa_csv(path), opt.num_examples);
  DS_CHECK(!examples.empty(), "no GPQA questions in {}", path);
  DS_CHECK(opt.repeat >= 1, "--repeat must be at least 1");
  std::string model = opt.model.empty() ? fetch_model_id(opt.url) : opt.model;

  std::vector<std::string> bodies;
  std::vector<char> letters;
  for (int rep = 0; rep < opt.repeat; ++rep)
    for (const auto& ex : examples) {
      char letter;
      std::string prompt = gpqa_prompt(ex, letter);
      json body = {{"model", model},
                   {"messages", {{{"role", "user"}, {"content", prompt}}}},
                   {"temperature", opt.temperature},
                   {"max_tokens", opt.max_tokens}};
      if (opt.top_p) body["top_p"] = *opt.top_p;
      if (!opt.reasoning_effort.empty()) body["reasoning_effort"] = opt.reasoning_effort;
      if (!opt.thinking_mode.empty()) {
        const char* key = opt.thinking_mode == "deepseek-v3" ? "thinking" : "enable_thinking";
        body["chat_template_kwargs"] = {{key, true}};
      }
      bodies.push_back(body.dump(-1, ' ', false, json::error_handler_t::replace));
      letters.push_back(letter);
    }
  // Each repeat runs its own pool of min(threads, examples) workers at the same time, as sglang does.
  int parallel = opt.repeat * std::min<int>(opt.num_threads, examples.size());
  double tic = now_seconds();
  auto calls = post_all(opt.url, "/v1/chat/completions", bodies, parallel, "gpqa", 3);
  GpqaResult res;
  res.latency_s = now_seconds() - tic;
  size_t n = examples.size();
  double sum = 0;
  for (int rep = 0; rep < opt.repeat; ++rep) {
    GpqaRun run;
    std::vector<double> scores, chars;
    for (size_t i = 0; i < n; ++i) {
      const auto& resp = calls[rep * n + i].response;
      std::string text;
      json j = resp.ok() ? json::parse(resp.body, nullptr, false) : json();
      if (resp.ok() && !j.is_discarded() && j.contains("choices") && !j["choices"].empty()) {
        text = reply_final_text(j["choices"][0].value("message", json::object()));
      } else {
        run.failed_requests++;  // sglang's sampler scores a 400 as an empty reply; so does this
        if (run.first_error.empty())
          run.first_error = !resp.error.empty() ? resp.error : fmt::format("HTTP {} {}: {}", resp.status, resp.reason, resp.body);
      }
      scores.push_back(gpqa_extract(text) == letters[rep * n + i] ? 1.0 : 0.0);
      chars.push_back(double(utf8_chars(text)));
    }
    run.score = np_mean(scores);
    run.score_std = np_std(scores);
    run.chars = np_mean(chars);
    run.chars_std = np_std(chars);
    sum += run.score;
    res.runs.push_back(run);
  }
  res.mean_score = sum / opt.repeat;
  return res;
}

std::string format_gpqa(const GpqaResult& r) {
  std::string s;
  if (r.runs.size() > 1) {
    std::string list;
    for (const auto& run : r.runs) {
      if (!list.empty()) list += ", ";
      list += fmt::format("'{:.3f}'", run.score);
    }
    s += std::string(20, '=') + "\n";
    s += fmt::format("Repeat: {}, mean: {:.3f}\n", r.runs.size(), r.mean_score);
    s += fmt::format("Scores: [{}]\n", list);
    s += std::string(20, '=') + "\n";
  }
  const auto& last = r.runs.back();
  s += fmt::format("{{'chars': {}, 'chars:std': {}, 'score:std': {}, 'score': {}}}\n", last.chars, last.chars_std,
                   last.score_std, last.score);
  s += fmt::format("Total latency: {:.3f} s\nScore: {:.3f}\n", r.latency_s, last.score);
  return s;
}

}  // namespace ds::bench
