// `dsserve bench engine`: the engine's own cost per step (scheduling, batch building, sampling,
// detokenizing, output delivery) next to the runner's forward, at several numbers of running
// requests, in process (no HTTP). What the server adds per step must stay small next to a GPU step.
#include "perf/engine_bench.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/model_runner.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::perf {

namespace {

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int x = 0;
    try {
      x = std::stoi(item);
    } catch (...) {
      fail("--running: '{}' is not a number", item);
    }
    DS_CHECK(x >= 1, "--running: {} must be >= 1", x);
    v.push_back(x);
  }
  return v;
}

}  // namespace

void run_engine_bench(const EngineBenchOptions& f, std::unique_ptr<backend::Backend> be) {
  auto model = model::Model::load(f.model_path, *be);
  auto tok = tok::Tokenizer::load(f.tokenizer.empty() ? f.model_path : f.tokenizer);
  const auto& mc = model->config();
  fmt::print("model {} (vocab {}, {} layers), prompt {} tokens, {} measured steps, temperature {}, {} backend, "
             "sampling on the {}{}\n", f.model_path, mc.vocab_size, mc.num_hidden_layers, f.input_len, f.steps,
             f.temperature, be->name(), be->can_sample() && !f.host_sampling ? "device" : "host",
             f.speculative_num_steps > 0 ? fmt::format(", {} MTP drafts per step (pause bound {})",
                                                       f.speculative_num_steps, f.speculative_min_accept_length)
                                         : "");
  // The step's phases (EngineStats::StepPhases, ms per step): plan, the forward as queued, draw (the wait
  // for the device + sampling), output, the draft step; forward ms = forward + drafts.
  fmt::print("{:>8} {:>10} {:>11} {:>12} {:>14} {:>12} {:>10}   {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}\n", "running",
             "step ms", "forward ms", "overhead ms", "(of which out)", "overhead/req", "tok/s", "plan", "fwd", "draw",
             "output", "drafts", "pauses", "tok/step");
  std::mt19937 rng(1);
  for (int n : parse_list(f.running)) {
    // Enough to stay decoding over the window (a speculative step may emit S + 1 tokens).
    const int max_new = (f.steps + 64) * (1 + f.speculative_num_steps);
    runtime::EngineConfig cfg;
    cfg.page_size = f.page_size;
    cfg.context_length = f.input_len + max_new;
    cfg.max_running_requests = n;
    cfg.max_total_tokens = int64_t(n) * ((f.input_len + max_new) / f.page_size + 2) * f.page_size;
    for (auto id : mc.eos_token_ids) cfg.eos_token_ids.push_back(int32_t(id));
    cfg.speculative_num_steps = f.speculative_num_steps;
    cfg.speculative_min_accept_length = f.speculative_min_accept_length;
    runtime::RunnerConfig rc;
    rc.draft_steps = f.speculative_num_steps;
    rc.sample_on_device = !f.host_sampling;
    rc.cuda_graph_max_bs = f.cuda_graph_max_bs;
    rc.cuda_graph_lazy = true;  // recorded in the first steps, before the measured window
    auto engine = runtime::make_engine(cfg, *model, tok, rc);
    std::atomic<int> started{0};
    for (int i = 0; i < n; ++i) {
      runtime::GenerateRequest r;
      r.id = fmt::format("bench-{}", i);
      for (int t = 0; t < f.input_len; ++t) r.prompt.push_back(int32_t(3 + rng() % (mc.vocab_size - 3)));
      r.max_new_tokens = max_new;
      r.sampling.temperature = f.temperature;
      r.sampling.ignore_eos = true;
      auto first = std::make_shared<std::atomic<bool>>(false);
      engine->submit(std::move(r), [&started, first](runtime::RequestOutput&& o) {
        if (!o.token_ids.empty() && !first->exchange(true)) ++started;
      });
    }
    while (started.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto s0 = engine->stats();
    runtime::EngineStats s1;
    do {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      s1 = engine->stats();
    } while (s1.steps_total - s0.steps_total < f.steps);
    const double steps = double(s1.steps_total - s0.steps_total);
    const double step = (s1.busy_ms_total - s0.busy_ms_total) / steps;
    const double fwd = (s1.forward_ms_total - s0.forward_ms_total) / steps;
    const double out = (s1.sample_ms_total - s0.sample_ms_total) / steps;
    const double toks = double(s1.generation_tokens_total - s0.generation_tokens_total);
    const auto &p0 = s0.phases, &p1 = s1.phases;
    fmt::print("{:>8} {:>10.3f} {:>11.3f} {:>12.3f} {:>14.3f} {:>12.4f} {:>10.0f}   {:>7.3f} {:>7.3f} {:>7.3f} {:>7.3f} "
               "{:>7.3f} {:>7} {:>8.2f}\n",
               n, step, fwd, step - fwd, out, (step - fwd) / n, toks / ((s1.busy_ms_total - s0.busy_ms_total) / 1e3),
               (p1.plan_ms - p0.plan_ms) / steps, (p1.forward_ms - p0.forward_ms) / steps,
               (p1.draw_ms - p0.draw_ms) / steps, (p1.output_ms - p0.output_ms) / steps,
               (p1.drafts_ms - p0.drafts_ms) / steps, s1.spec_pauses_total - s0.spec_pauses_total, toks / steps);
    engine->shutdown();
  }
}

}  // namespace ds::perf
