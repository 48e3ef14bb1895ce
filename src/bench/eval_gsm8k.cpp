#include "bench/eval_gsm8k.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "bench/download.h"
#include "bench/eval_runner.h"
#include "bench/serving.h"
#include "util/error.h"

namespace ds::bench {

using nlohmann::json;

std::vector<Gsm8kItem> read_gsm8k_jsonl(const std::string& path) {
  std::vector<Gsm8kItem> items;
  for_each_jsonl(path, [&](const json& j, int n) {
    DS_CHECK(j.is_object() && j.contains("question") && j.contains("answer"),
             "{}:{}: not a GSM8K record (want {{\"question\", \"answer\"}})", path, n);
    items.push_back({j["question"].get<std::string>(), j["answer"].get<std::string>()});
  });
  return items;
}

std::string gsm8k_example(const Gsm8kItem& item, bool include_answer) {
  std::string s = "Question: " + item.question + "\nAnswer:";
  if (include_answer) s += " " + item.answer;
  return s;
}

std::string gsm8k_few_shot(const std::vector<Gsm8kItem>& items, int k) {
  std::string s;
  for (int i = 0; i < k && i < static_cast<int>(items.size()); ++i) s += gsm8k_example(items[i], true) + "\n\n";
  return s;
}

std::optional<std::string> gsm8k_answer_value(const std::string& text) {
  std::string last;
  bool in_run = false;
  for (char c : text) {
    if (c == ',') continue;  // commas are removed before matching, so "1,000" reads as 1000
    if (c >= '0' && c <= '9') {
      if (!in_run) last.clear();
      last += c;
      in_run = true;
    } else {
      in_run = false;
    }
  }
  if (last.empty()) return std::nullopt;
  if (last.find_first_not_of('0') == std::string::npos) return std::string("0");  // "00" is 0 in Python
  if (last[0] == '0') return std::nullopt;  // "07": SyntaxError in literal_eval -> INVALID
  return last;
}

Gsm8kResult run_gsm8k(const Gsm8kOptions& opt) {
  std::string path = opt.data_path;
  if (path.empty() || !std::filesystem::exists(path))
    path = ensure_file(path.empty() ? "/tmp/test.jsonl" : path, kGsm8kUrl, "the GSM8K test set (test.jsonl)");
  auto items = read_gsm8k_jsonl(path);
  DS_CHECK(!items.empty(), "{} has no questions", path);
  std::string few_shot = gsm8k_few_shot(items, opt.num_shots);
  int n = std::min<int>(opt.num_questions, items.size());
  std::vector<std::string> bodies;
  std::vector<std::optional<std::string>> labels;
  for (int i = 0; i < n; ++i) {
    labels.push_back(gsm8k_answer_value(items[i].answer));
    DS_CHECK(labels.back().has_value(), "{}: question {} has no numeric answer", path, i);
    json body = {{"text", few_shot + gsm8k_example(items[i], false)},
                 {"sampling_params",
                  {{"max_new_tokens", opt.max_new_tokens},
                   {"temperature", 0},
                   {"stop", {"Question", "Assistant:", "<|separator|>"}}}}};
    bodies.push_back(body.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  double tic = now_seconds();
  auto calls = post_all(opt.url, "/generate", bodies, opt.parallel, "gsm8k");
  Gsm8kResult r;
  r.latency_s = now_seconds() - tic;
  r.num_questions = n;
  long out_tokens = 0;
  int correct = 0, invalid = 0;
  for (int i = 0; i < n; ++i) {
    std::string text;
    const auto& resp = calls[i].response;
    json j = resp.ok() ? json::parse(resp.body, nullptr, false) : json();
    if (resp.ok() && !j.is_discarded() && j.contains("text")) {
      text = j["text"].get<std::string>();
      if (j.contains("meta_info")) out_tokens += j["meta_info"].value("completion_tokens", 0);
    } else {
      r.failed_requests++;
      if (r.first_error.empty())
        r.first_error = !resp.error.empty() ? resp.error : fmt::format("HTTP {} {}: {}", resp.status, resp.reason, resp.body);
    }
    auto pred = gsm8k_answer_value(text);
    if (!pred) ++invalid;
    else if (*pred == *labels[i]) ++correct;
    r.outputs.push_back(std::move(text));
  }
  r.accuracy = double(correct) / n;
  r.invalid = double(invalid) / n;
  r.output_throughput = out_tokens / r.latency_s;
  return r;
}

std::string format_gsm8k(const Gsm8kResult& r) {
  return fmt::format("Accuracy: {:.3f}\nInvalid: {:.3f}\nLatency: {:.3f} s\nOutput throughput: {:.3f} token/s\n",
                     r.accuracy, r.invalid, r.latency_s, r.output_throughput);
}

}  // namespace ds::bench
