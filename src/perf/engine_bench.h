// `dsserve bench engine` as a library call: the engine's own cost per step (scheduling, batch building,
// sampling, detokenizing, output delivery) next to the runner's forward, at several numbers of running
// requests, in process (no HTTP).
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "runtime/step_recorder.h"

namespace ds::perf {

// The command's flags (cli/cmd_bench_engine.cpp documents each).
struct EngineBenchOptions {
  std::string model_path, tokenizer, running = "1,64,256", device = "cpu";
  int input_len = 128, steps = 50, threads = 0, page_size = 64, cuda_graph_max_bs = runtime::kDefaultCudaGraphMaxBs;
  float temperature = 0.0f;
  bool host_sampling = false;
  int speculative_num_steps = 0;               // > 0: MTP speculative decoding, as serve's flag
  double speculative_min_accept_length = 1.5;  // serve's pause bound (0: never pause)
};

void run_engine_bench(const EngineBenchOptions& f, std::unique_ptr<backend::Backend> be);

}  // namespace ds::perf
