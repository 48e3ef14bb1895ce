// `dsserve bench serving`: sglang.bench_serving's flags, datasets, report and JSONL record.
#include <fmt/chrono.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "bench/datasets.h"
#include "bench/metrics.h"
#include "bench/report.h"
#include "bench/serving.h"
#include "bench/server_tokenizer.h"
#include "bench/tokenizer.h"
#include "cli/commands.h"
#include "util/error.h"

namespace ds::cli {

namespace {

struct BenchFlags {
  bench::DatasetOptions data;
  std::string backend = "sglang", host = "127.0.0.1", base_url, model, tokenizer, request_rate = "inf",
              extra_request_body, output_file;
  int port = 0, max_concurrency = 0, seed = 1, warmup_requests = 1;
  int sharegpt_output_len = -1, sharegpt_context_len = -1;
  bool disable_stream = false, disable_ignore_eos = false, disable_tqdm = false, output_details = false;
};

double parse_rate(const std::string& s) {
  if (s == "inf" || s == "Inf" || s == "INF") return std::numeric_limits<double>::infinity();
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used == s.size() && v > 0) return v;
  } catch (...) {
  }
  fail("--request-rate '{}': want a positive number or inf", s);
}

// sglang loads the tokenizer from --tokenizer, else from --model, else the served model's. A model
// directory that cannot be loaded yet is only a note: token counts then come from the server.
std::unique_ptr<bench::TextTokenizer> pick_tokenizer(const BenchFlags& f, const bench::Url& url) {
  if (!f.tokenizer.empty()) return bench::load_text_tokenizer(f.tokenizer);
  namespace fs = std::filesystem;
  if (!f.model.empty() && fs::exists(fs::path(f.model) / "tokenizer.json")) {
    try {
      return bench::load_text_tokenizer(f.model);
    } catch (const std::exception& e) {
      std::printf("note: cannot load the tokenizer of %s (%s); counting tokens from server usage\n", f.model.c_str(), e.what());
    }
  }
  const bench::ServerTokenizerLookup found = bench::find_server_tokenizer(url);
  if (found.local_path) {
    std::printf("no --tokenizer: using the server's tokenizer %s\n", found.local_path->c_str());
    return bench::load_text_tokenizer(*found.local_path);
  }
  const bool needs_one = f.data.name != "sharegpt";
  if (needs_one)
    fail("--dataset-name {} needs a tokenizer and none was given: {}; pass --tokenizer DIR (a directory with "
         "tokenizer.json)",
         f.data.name, found.why_not);
  std::printf("note: no --tokenizer and %s\n", found.why_not.c_str());
  return nullptr;
}

std::string default_output_file(const BenchFlags& f) {
  auto today = fmt::format("{:%m%d}", fmt::localtime(std::time(nullptr)));
  if (f.data.name.starts_with("random"))
    return fmt::format("{}_{}_{}_{}_{}.jsonl", f.backend, today, f.data.num_prompts, f.data.random_input_len,
                       f.data.random_output_len);
  return fmt::format("{}_{}_{}_{}.jsonl", f.backend, today, f.data.num_prompts, f.data.name);
}

void run_bench_serving(BenchFlags f) {
  bench::ServingOptions opt;
  opt.backend = f.backend;
  bench::backend_spec(f.backend);  // validates the name early
  if (f.port == 0) f.port = f.backend.starts_with("vllm") ? 8000 : 30000;
  opt.url = bench::Url::from_flags(f.base_url, f.host, f.port);
  opt.request_rate = parse_rate(f.request_rate);
  opt.max_concurrency = f.max_concurrency;
  opt.warmup_requests = f.warmup_requests;
  opt.request.stream = !f.disable_stream;
  opt.request.ignore_eos = !f.disable_ignore_eos;
  opt.progress = !f.disable_tqdm;
  if (!f.extra_request_body.empty()) {
    auto j = nlohmann::json::parse(f.extra_request_body, nullptr, false);
    DS_CHECK(!j.is_discarded() && j.is_object(), "--extra-request-body is not a JSON object: {}", f.extra_request_body);
    opt.request.extra_body = j;
  }
  if (f.sharegpt_output_len > 0) f.data.sharegpt_output_len = f.sharegpt_output_len;
  if (f.sharegpt_context_len > 0) f.data.sharegpt_context_len = f.sharegpt_context_len;
  opt.model = f.model.empty() ? bench::fetch_model_id(opt.url) : f.model;

  std::printf("benchmark_args: backend=%s url=%s model=%s dataset=%s num_prompts=%d request_rate=%s max_concurrency=%s\n",
              f.backend.c_str(), opt.url.str().c_str(), opt.model.c_str(), f.data.name.c_str(), f.data.num_prompts,
              f.request_rate.c_str(), f.max_concurrency ? std::to_string(f.max_concurrency).c_str() : "not set");
  auto tokenizer = pick_tokenizer(f, opt.url);
  std::mt19937_64 rng(static_cast<uint64_t>(f.seed));
  if (!tokenizer && opt.request.stream && bench::backend_spec(f.backend).api != bench::Api::kGenerate &&
      !opt.request.extra_body.contains("stream_options")) {
    // Without a tokenizer the prompt token counts must come from the server's usage.
    opt.request.extra_body["stream_options"] = {{"include_usage", true}};
    std::printf("note: no tokenizer; asking the server for usage (stream_options.include_usage)\n");
  }
  auto rows = bench::load_dataset(f.data, tokenizer.get(), rng);
  DS_CHECK(!rows.empty(), "the dataset gave no requests");
  std::fflush(stdout);

  bench::ServingRun run = bench::run_serving(rows, opt, rng);
  bench::Metrics m = bench::calculate_metrics(rows, run.outputs, run.duration_s, tokenizer.get(), f.backend, run.accept_length);

  bench::RunInfo info;
  info.backend = f.backend;
  info.dataset_name = f.data.name;
  info.request_rate = opt.request_rate;
  info.max_concurrency = f.max_concurrency;
  info.duration_s = run.duration_s;
  info.accept_length = run.accept_length;
  info.random_input_len = f.data.random_input_len;
  info.random_output_len = f.data.random_output_len;
  info.random_range_ratio = f.data.random_range_ratio;
  info.sharegpt_output_len = f.data.sharegpt_output_len;
  for (const auto& o : run.outputs)
    if (!o.success) {
      if (info.failed++ == 0) info.first_error = o.error;
    }
  if (info.failed > 0) std::printf("\nFailed requests: %d (first error: %s)\n", info.failed, info.first_error.c_str());
  if (m.retokenized_from_server)
    std::printf("note: no tokenizer; \"retokenized\" counts are the server's completion token counts\n");
  std::fputs(bench::format_report(info, m).c_str(), stdout);

  std::string path = f.output_file.empty() ? default_output_file(f) : f.output_file;
  std::ofstream out(path, std::ios::app);
  DS_CHECK(out.good(), "cannot write --output-file {}", path);
  out << bench::result_record(info, m, run.outputs, run.server_info)
             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
      << "\n";
  std::fflush(stdout);
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks against a running server");
  register_bench_engine(bench);
  register_bench_model(bench);
  bench->require_subcommand(1);
  auto* s = bench->add_subcommand("serving", "Online serving benchmark (the flags of sglang.bench_serving)");
  auto f = std::make_shared<BenchFlags>();
  s->add_option("--backend", f->backend, "sglang (/generate), sglang-oai|vllm|openai (/v1/completions), "
                                         "sglang-oai-chat|openai-chat (/v1/chat/completions)")->capture_default_str();
  s->add_option("--host", f->host, "Server host")->capture_default_str();
  s->add_option("--port", f->port, "Server port (default 30000; 8000 for vllm)");
  s->add_option("--base-url", f->base_url, "Server base URL, instead of --host/--port");
  s->add_option("--model", f->model, "Model name sent in OpenAI requests (default: the first of /v1/models)");
  s->add_option("--tokenizer", f->tokenizer, "Tokenizer directory (tokenizer.json), for token counts and datasets (default: --model's, else the one the server reports in /get_model_info when it is on this machine)");
  s->add_option("--dataset-name", f->data.name, "sharegpt | random | random-ids | generated-shared-prefix")
      ->check(CLI::IsMember({"sharegpt", "random", "random-ids", "generated-shared-prefix"}))
      ->capture_default_str();
  s->add_option("--dataset-path", f->data.path, "ShareGPT JSON file");
  s->add_option("--num-prompts", f->data.num_prompts, "Number of requests")->capture_default_str();
  s->add_option("--random-input-len", f->data.random_input_len, "Input tokens per request (random datasets)")->capture_default_str();
  s->add_option("--random-output-len", f->data.random_output_len, "Output tokens per request (random datasets)")->capture_default_str();
  s->add_option("--random-range-ratio", f->data.random_range_ratio, "Lengths are drawn from [len*ratio, len]")->capture_default_str();
  s->add_option("--sharegpt-output-len", f->sharegpt_output_len, "Fixed output length for ShareGPT requests");
  s->add_option("--sharegpt-context-len", f->sharegpt_context_len, "Drop ShareGPT requests longer than this");
  s->add_option("--gsp-num-groups", f->data.gsp_num_groups, "generated-shared-prefix: groups")->capture_default_str();
  s->add_option("--gsp-prompts-per-group", f->data.gsp_prompts_per_group, "generated-shared-prefix: prompts per group")->capture_default_str();
  s->add_option("--gsp-system-prompt-len", f->data.gsp_system_prompt_len, "generated-shared-prefix: system prompt tokens")->capture_default_str();
  s->add_option("--gsp-question-len", f->data.gsp_question_len, "generated-shared-prefix: question tokens")->capture_default_str();
  s->add_option("--gsp-output-len", f->data.gsp_output_len, "generated-shared-prefix: output tokens")->capture_default_str();
  s->add_option("--gsp-range-ratio", f->data.gsp_range_ratio, "generated-shared-prefix: length range ratio")->capture_default_str();
  s->add_option("--request-rate", f->request_rate, "Requests per second (Poisson arrivals); inf = all at once")->capture_default_str();
  s->add_option("--max-concurrency", f->max_concurrency, "Most requests in flight at once");
  s->add_option("--seed", f->seed, "Random seed")->capture_default_str();
  s->add_option("--warmup-requests", f->warmup_requests, "Warmup requests before the run")->capture_default_str();
  s->add_flag("--disable-stream", f->disable_stream, "Non-streaming requests");
  s->add_flag("--disable-ignore-eos", f->disable_ignore_eos, "Let requests stop at EOS");
  s->add_option("--extra-request-body", f->extra_request_body, "JSON object merged into every request");
  s->add_option("--output-file", f->output_file, "JSONL file to append this run's record to");
  s->add_flag("--output-details", f->output_details, "Accepted for compatibility; details are always written");
  s->add_flag("--disable-tqdm", f->disable_tqdm, "No progress bar");
  s->add_flag("--apply-chat-template", f->data.apply_chat_template, "Wrap prompts in the DeepSeek chat format");
  s->callback([f] { run_bench_serving(*f); });
}

}  // namespace ds::cli
