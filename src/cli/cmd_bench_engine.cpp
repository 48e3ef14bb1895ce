// `dsserve bench engine`: its flags (the measurement is perf/engine_bench.h).
#include "cli/commands.h"
#include "cli/make_backend.h"
#include "perf/engine_bench.h"
#include "util/log.h"

namespace ds::cli {

void register_bench_engine(CLI::App* bench) {
  auto* cmd = bench->add_subcommand("engine", "engine cost per step next to the model forward (in process, no HTTP)");
  auto f = std::make_shared<perf::EngineBenchOptions>();
  cmd->add_option("--model-path,--model", f->model_path, "checkpoint directory")->required();
  cmd->add_option("--tokenizer", f->tokenizer, "tokenizer.json or its directory (default: the model directory)");
  cmd->add_option("--running", f->running, "comma-separated numbers of running requests to measure");
  cmd->add_option("--input-len", f->input_len, "prompt tokens per request")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--steps", f->steps, "decode steps measured at each size")->check(CLI::Range(1, 100000));
  cmd->add_option("--temperature", f->temperature, "0 = greedy; > 0 measures the full sampling path");
  cmd->add_option("--page-size", f->page_size, "KV page size")->check(CLI::Range(1, 4096));
  cmd->add_option("--cuda-graph-max-bs", f->cuda_graph_max_bs, "cuda: decode steps up to this batch replay CUDA graphs (0: never)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)");
  cmd->add_option("--device", f->device, "backend: cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--host-sampling", f->host_sampling, "sample on the host even where the backend samples on its device");
  cmd->add_option("--speculative-num-steps", f->speculative_num_steps,
                  "MTP speculative decoding with this many drafts per step (0: plain decoding)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--speculative-min-accept-length", f->speculative_min_accept_length,
                  "the pause bound of serve's flag (0: never pause)")
      ->check(CLI::Range(0.0, 64.0));
  cmd->callback([f] {
    init_logging("warning");
    perf::run_engine_bench(*f, make_backend(f->device, 0, f->threads));
  });
}

}  // namespace ds::cli
