// `dsserve serve`'s flags: sglang.launch_server's where the meaning is the same, their checks (a clear error
// per bad value, unknown flags named with the closest known ones) and what they mean for the replica.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "cli/serve_replica.h"
#include "runtime/engine.h"
#include "runtime/parallel_config.h"
#include "runtime/step_recorder.h"

namespace ds::cli {

struct ServeFlags {
  std::string model_path, tokenizer_path, host = "127.0.0.1", served_model_name, reasoning_parser, tool_call_parser,
                                          chat_template, encoder = "auto", schedule_policy = "fcfs",
                                          kv_cache_dtype = "auto", api_key, log_level = "info", device = "cpu",
                                          indexer = "auto", load_format = "auto";
  int port = 30000, tp = 1, dp = 1, ep = 1, context_length = 0, max_running_requests = 0, page_size = 64,
      chunked_prefill_size = 8192, max_prefill_tokens = 16384, max_queued_requests = 4096, threads = 0,
      cuda_graph_max_bs = runtime::kDefaultCudaGraphMaxBs, base_gpu_id = 0, gpu_id_step = 1, nnodes = 1,
      moe_dense_tp_size = 0, node_rank = 0;
  std::string dist_init_addr;
  // Speculative decoding (SGLang's flags); 0: the default for the algorithm.
  std::string speculative_algorithm, speculative_draft_model_path, speculative_draft_head = "auto";
  int speculative_num_steps = 0, speculative_eagle_topk = 0, speculative_num_draft_tokens = 0;
  double speculative_min_accept_length = 1.5;
  int64_t max_total_tokens = 0, limit_concurrency = 0;  // 0: from the open-file limit
  double mem_fraction_static = 0;  // 0: the device's default
  double shutdown_timeout = 0;     // seconds SIGTERM lets running requests finish (vLLM's flag); 0: abort at once
  std::optional<uint64_t> random_seed;
  // Prefill/decode disaggregation (SGLang's flags; the timeout is dsserve's own).
  std::string disaggregation_mode = "null", disaggregation_transfer_backend = "ucx", disaggregation_ib_device;
  int disaggregation_bootstrap_port = 8998;
  double disaggregation_transfer_timeout = 60;
  double disaggregation_kv_buffer_gb = 0;  // 0: a quarter of the host's memory
  bool disable_regex_jump_forward = false, constrained_json_disable_any_whitespace = false;
  int32_t grammar_ahead_min_requests = runtime::EngineConfig{}.grammar_ahead_min_requests;
  bool enable_dp_attention = false, disable_radix_cache = false, enable_metrics = false, trust_remote_code = false,
       skip_server_warmup = false, disable_cuda_graph = false, cuda_graph_lazy = false,
       disable_custom_all_reduce = false;
};

constexpr double kCpuDefaultMemFraction = 0.1;    // of available RAM: the CPU backend is for tests and the demo
constexpr double kCudaDefaultMemFraction = 0.85;  // of free GPU memory, weights included (SGLang's meaning)

void add_serve_flags(CLI::App* cmd, ServeFlags& f);
// Unknown flags (CLI11's extras): an error naming them with the closest known ones.
void reject_unknown_serve_flags(CLI::App* cmd);
// Every flag's value checked, before anything is loaded.
void validate_serve_flags(const ServeFlags& f);
runtime::ParallelConfig parallel_config(const ServeFlags& f);
// The draft tokens per step of --speculative-*, 0 when speculative decoding is off.
int32_t speculative_steps(const ServeFlags& f);
// What every rank loads (the indexer's numerics, the draft head).
ReplicaFlags replica_flags(const ServeFlags& f);
// --disaggregation-kv-buffer-gb in bytes (0: a quarter of the host's physical memory).
int64_t pd_kv_buffer_limit(double gb);

}  // namespace ds::cli
