#include "bench/eval_aime.h"

#include <fmt/format.h>

#include <fstream>
#include <optional>

#include "bench/download.h"
#include "bench/eval_runner.h"
#include "bench/math_answer.h"
#include "bench/serving.h"
#include "util/error.h"

namespace ds::bench {

using nlohmann::json;

namespace {

// A JSON string or number as text ("70" and 70 both read as "70").
std::optional<std::string> text_field(const json& j, const char* a, const char* b) {
  for (const char* key : {a, b}) {
    if (!j.contains(key)) continue;
    const json& v = j[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<long long>());
    if (v.is_number()) return v.dump();
  }
  return std::nullopt;
}

}  // namespace

std::vector<MathProblem> read_math_problems(const std::string& path) {
  std::vector<MathProblem> out;
  for_each_jsonl(path, [&](const json& j, int n) {
    DS_CHECK(j.is_object(), "{}:{}: not a JSON object", path, n);
    auto problem = text_field(j, "problem", "question");
    auto answer = text_field(j, "expected_answer", "answer");
    DS_CHECK(problem && answer, "{}:{}: want \"problem\" (or \"question\") and \"expected_answer\" (or \"answer\")", path, n);
    std::string id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump())
                                      : std::to_string(out.size());
    out.push_back({id, *problem, *answer});
  });
  return out;
}

std::string math_prompt(const std::string& problem) {
  return "Solve the following math problem. Make sure to put the answer (and only answer) inside \\boxed{}.\n\n" +
         problem;
}

AimeResult run_aime(const AimeOptions& opt) {
  DS_CHECK(opt.benchmark == "aime25" || opt.benchmark == "aime24", "unknown benchmark {}", opt.benchmark);
  DS_CHECK(opt.num_samples >= 1, "--num-samples must be at least 1");
  DS_CHECK(opt.max_tokens >= 1, "--max-tokens must be at least 1");
  DS_CHECK(opt.parallel >= 1, "--parallel must be at least 1");
  bool is25 = opt.benchmark == "aime25";
  std::string path = opt.data_path.empty() ? fmt::format("/tmp/{}.jsonl", opt.benchmark) : opt.data_path;
  path = ensure_file(path, is25 ? kAime25Url : kAime24Url,
                     fmt::format("the AIME {} problems (JSONL of problem and expected_answer; pass --data-path)",
                                 is25 ? 2025 : 2024));
  auto problems = read_math_problems(path);
  DS_CHECK(!problems.empty(), "no problems in {}", path);
  if (opt.num_problems > 0 && static_cast<size_t>(opt.num_problems) < problems.size()) problems.resize(opt.num_problems);
  std::string model = opt.model.empty() ? fetch_model_id(opt.url) : opt.model;

  // Sample-major, as ns eval runs its seeds one after another; seed i makes sample i repeatable.
  const size_t np = problems.size(), ns = opt.num_samples;
  std::vector<std::string> bodies;
  for (size_t s = 0; s < ns; ++s)
    for (const auto& p : problems) {
      json body = {{"model", model},
                   {"messages", {{{"role", "user"}, {"content", math_prompt(p.problem)}}}},
                   {"temperature", opt.temperature},
                   {"top_p", opt.top_p},
                   {"max_tokens", opt.max_tokens},
                   {"seed", s}};
      if (opt.thinking_mode != "none") {
        const char* key = opt.thinking_mode == "deepseek-v3" ? "thinking" : "enable_thinking";
        body["chat_template_kwargs"] = {{key, true}};
      }
      bodies.push_back(body.dump(-1, ' ', false, json::error_handler_t::replace));
    }
  double tic = now_seconds();
  auto calls = post_all(opt.url, "/v1/chat/completions", bodies, opt.parallel, opt.benchmark, 2);
  double seconds = now_seconds() - tic;

  AimeResult res;
  res.benchmark = opt.benchmark;
  std::vector<std::vector<MathSample>> samples(np, std::vector<MathSample>(ns));
  std::ofstream out;
  if (!opt.output_file.empty()) {
    out.open(opt.output_file);
    DS_CHECK(out.good(), "cannot write {}", opt.output_file);
  }
  for (size_t s = 0; s < ns; ++s)
    for (size_t p = 0; p < np; ++p) {
      const auto& resp = calls[s * np + p].response;
      MathSample& sample = samples[p][s];
      json j = resp.ok() ? json::parse(resp.body, nullptr, false) : json();
      std::string text, error;
      if (resp.ok() && !j.is_discarded() && j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
        text = reply_final_text(j["choices"][0].value("message", json::object()));
        const json& usage = j.contains("usage") ? j["usage"] : json();
        if (usage.is_object() && usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer())
          sample.tokens = usage["completion_tokens"].get<int>();
      } else {
        error = !resp.error.empty() ? resp.error : fmt::format("HTTP {} {}: {}", resp.status, resp.reason, resp.body);
        res.failed_requests++;  // scored as a sample without an answer
        if (res.first_error.empty()) res.first_error = error;
      }
      sample.answer = last_boxed(text);
      sample.correct = sample.answer && math_answers_equal(problems[p].answer, *sample.answer);
      if (out.is_open()) {
        json rec = {{"id", problems[p].id},        {"sample", s},
                    {"expected_answer", problems[p].answer},
                    {"predicted_answer", sample.answer ? json(*sample.answer) : json(nullptr)},
                    {"symbolic_correct", sample.correct}, {"num_generated_tokens", sample.tokens},
                    {"generation", text}};
        if (!error.empty()) rec["error"] = error;
        out << rec.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      }
    }
  res.metrics = compute_math_metrics(samples, seconds);
  return res;
}

std::string format_aime(const AimeResult& r) { return format_math_metrics(r.benchmark, r.metrics); }

}  // namespace ds::bench
