// `dsserve eval gsm8k|mmlu|gpqa|aime25|aime24`: sglang's accuracy clients against a running server.
#include <cstdio>
#include <memory>

#include "bench/eval_aime.h"
#include "bench/eval_gpqa.h"
#include "bench/eval_gsm8k.h"
#include "bench/eval_mmlu.h"
#include "bench/eval_runner.h"
#include "cli/commands.h"
#include "util/error.h"

namespace ds::cli {

namespace {

struct Target {
  std::string host = "127.0.0.1", base_url, model;
  int port = 30000;
  bench::Url url() const { return bench::eval_url(base_url, host, port); }
};

void add_target(CLI::App* c, Target& t) {
  c->add_option("--host", t.host, "Server host (a leading http:// is accepted)")->capture_default_str();
  c->add_option("--port", t.port, "Server port")->capture_default_str();
  c->add_option("--base-url", t.base_url, "Server base URL, instead of --host/--port");
  c->add_option("--model", t.model, "Model name for OpenAI requests (default: the first of /v1/models)");
}

void report_failures(int failed, const std::string& first) {
  if (failed > 0) std::printf("Failed requests: %d (first error: %s)\n", failed, first.c_str());
}

// `eval aime25` and `eval aime24`: the same client, another problem set.
void add_aime(CLI::App* ev, const std::string& name, const std::string& year) {
  auto* c = ev->add_subcommand(name, "AIME " + year + " with thinking, pass@1 over N samples, majority@N, pass@N "
                                     "(NeMo-Skills' ns eval --benchmarks=" + name + ":4)");
  auto t = std::make_shared<Target>();
  auto o = std::make_shared<bench::AimeOptions>();
  o->benchmark = name;
  add_target(c, *t);
  c->add_option("--num-samples,-n", o->num_samples, "Samples per problem (pass@1 is their mean)")->capture_default_str();
  c->add_option("--max-tokens", o->max_tokens, "Tokens per reply, reasoning included (120000 for V3.2-Speciale)")
      ->capture_default_str();
  c->add_option("--temperature", o->temperature, "Sampling temperature")->capture_default_str();
  c->add_option("--top-p", o->top_p, "Sampling top-p")->capture_default_str();
  c->add_option("--thinking-mode", o->thinking_mode,
                "deepseek-v3 (chat_template_kwargs.thinking) | deepseek-r1 | qwen3 (enable_thinking) | none")
      ->check(CLI::IsMember({"deepseek-r1", "deepseek-v3", "qwen3", "none"}))
      ->capture_default_str();
  c->add_option("--parallel", o->parallel, "Requests in flight")->capture_default_str();
  c->add_option("--num-problems", o->num_problems, "Ask only the first K problems (default: all)");
  c->add_option("--data-path", o->data_path,
                "JSONL of problem (or question) and expected_answer (or answer) (default /tmp/" + name +
                    ".jsonl, downloaded from NeMo-Skills if missing)");
  c->add_option("--output-file", o->output_file, "Write one JSONL record per sample (answer, correctness, reply)");
  c->callback([t, o] {
    o->url = t->url();
    o->model = t->model;
    auto r = bench::run_aime(*o);
    report_failures(r.failed_requests, r.first_error);
    std::fputs(bench::format_aime(r).c_str(), stdout);
  });
}

}  // namespace

void register_eval(CLI::App& app) {
  auto* ev = app.add_subcommand("eval", "Accuracy evaluations against a running server");
  ev->require_subcommand(1);

  {
    auto* c = ev->add_subcommand("gsm8k", "Few-shot GSM8K (sglang.test.few_shot_gsm8k)");
    auto t = std::make_shared<Target>();
    auto o = std::make_shared<bench::Gsm8kOptions>();
    add_target(c, *t);
    c->add_option("--num-shots", o->num_shots, "Solved examples before each question")->capture_default_str();
    c->add_option("--num-questions", o->num_questions, "Questions to ask")->capture_default_str();
    c->add_option("--max-new-tokens", o->max_new_tokens, "Tokens per answer")->capture_default_str();
    c->add_option("--parallel", o->parallel, "Requests in flight")->capture_default_str();
    c->add_option("--data-path", o->data_path, "GSM8K test.jsonl (default /tmp/test.jsonl, downloaded if missing)");
    c->callback([t, o] {
      o->url = t->url();
      auto r = bench::run_gsm8k(*o);
      report_failures(r.failed_requests, r.first_error);
      std::fputs(bench::format_gsm8k(r).c_str(), stdout);
    });
  }
  {
    auto* c = ev->add_subcommand("mmlu", "5-shot MMLU (sglang benchmark/mmlu)");
    auto t = std::make_shared<Target>();
    auto o = std::make_shared<bench::MmluOptions>();
    add_target(c, *t);
    c->add_option("--nsub", o->nsub, "Number of subjects (alphabetical)")->capture_default_str();
    c->add_option("--ntrain,-k", o->ntrain, "Shots per subject")->capture_default_str();
    c->add_option("--parallel", o->parallel, "Requests in flight")->capture_default_str();
    c->add_option("--data-path,--data-dir,--data_dir,-d", o->data_dir,
                  "Directory with dev/ and test/ CSVs (default ./data, downloaded if missing)");
    c->callback([t, o] {
      o->url = t->url();
      auto r = bench::run_mmlu(*o);
      report_failures(r.failed_requests, r.first_error);
      std::fputs(bench::format_mmlu(r).c_str(), stdout);
    });
  }
  {
    auto* c = ev->add_subcommand("gpqa", "GPQA diamond with thinking (sglang.test.run_eval --eval-name gpqa)");
    auto t = std::make_shared<Target>();
    auto o = std::make_shared<bench::GpqaOptions>();
    auto num_examples = std::make_shared<int>(0);
    auto top_p = std::make_shared<double>(-1);
    add_target(c, *t);
    c->add_option("--num-examples", *num_examples, "Questions to sample (default: all)");
    c->add_option("--repeat", o->repeat, "Run the evaluation this many times; print the mean")->capture_default_str();
    c->add_option("--num-threads", o->num_threads, "Requests in flight per repeat")->capture_default_str();
    c->add_option("--max-tokens", o->max_tokens, "Tokens per reply")->capture_default_str();
    c->add_option("--temperature", o->temperature, "Sampling temperature")->capture_default_str();
    c->add_option("--top-p", *top_p, "Sampling top-p (sent only when given)");
    c->add_option("--reasoning-effort", o->reasoning_effort, "Sent as reasoning_effort when given");
    c->add_option("--thinking-mode", o->thinking_mode, "deepseek-v3 (chat_template_kwargs.thinking) | deepseek-r1 | qwen3")
        ->check(CLI::IsMember({"deepseek-r1", "deepseek-v3", "qwen3"}));
    c->add_option("--data-path", o->data_path, "gpqa_diamond.csv (default /tmp/gpqa_diamond.csv, downloaded if missing)");
    c->callback([t, o, num_examples, top_p] {
      o->url = t->url();
      o->model = t->model;
      if (*num_examples > 0) o->num_examples = *num_examples;
      if (*top_p >= 0) o->top_p = *top_p;
      auto r = bench::run_gpqa(*o);
      for (const auto& run : r.runs) report_failures(run.failed_requests, run.first_error);
      std::fputs(bench::format_gpqa(r).c_str(), stdout);
    });
  }
  add_aime(ev, "aime25", "2025");
  add_aime(ev, "aime24", "2024");
}

}  // namespace ds::cli
