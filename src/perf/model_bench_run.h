// `dsserve bench model` as a library call: loads or generates the model on the given backend, measures
// decode steps and prefill through model runners (model_bench.h) and prints the tables (and a CSV).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/model.h"
#include "runtime/step_recorder.h"

namespace ds::perf {

// The command's flags (cli/cmd_bench_model.cpp documents each).
struct ModelBenchOptions {
  std::string model_path, preset, device = "cpu", batches = "1,8,32,128", prefill = "1024,8192,32768", csv,
      log_level = "warning", kv_dtype = "auto", indexer = "auto";
  int64_t num_layers = 0, chunk = 8192, copy_mib = 0;
  uint64_t seed = 0;
  int tp = 1, ep = 1;  // tensor-parallel ranks (perf/model_bench_tp.h); ep == tp: whole experts per rank
  int dp = 1;          // DP attention groups inside the tp ranks (--dp N --enable-dp-attention's layout)
  int context = 4096, steps = 10, warmup = 3, threads = 0, page_size = 64, extrapolate_to = 0,
      cuda_graph_max_bs = runtime::kDefaultCudaGraphMaxBs;
  std::string spec_steps;  // "1,2,3": also speculative decoding's verify and draft steps with these many drafts
  std::string draft_head = "auto";  // --speculative-draft-head: auto | shared | fp8 (as dsserve serve)
  // peak_tflops 0: on CUDA the FP8 GEMM ceiling measured in process (backend/cuda/compute_ceiling.h), else
  // the nominal FP8 dense peak of an H100/H200 SXM.
  double hbm_gbs = 0, peak_tflops = 0;
  bool profile = false;
};

// "1,8,32" -> {1, 8, 32}; throws ds::Error naming `flag` for anything but positive numbers.
std::vector<int64_t> parse_sizes(const std::string& s, const char* flag);
// The config of --preset (--num-layers, --seed; the MTP layer only with --speculative-num-steps).
model::ModelConfig bench_preset_config(const ModelBenchOptions& f);

// The models' options: the draft head of --speculative-draft-head when speculative steps are timed.
model::ModelOptions bench_model_options(const ModelBenchOptions& f);

// Throws ds::Error when a configuration failed (after the others ran and were reported).
void run_model_bench(const ModelBenchOptions& f, std::unique_ptr<backend::Backend> backend);

}  // namespace ds::perf
