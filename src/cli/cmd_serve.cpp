// `dsserve serve`: the OpenAI-compatible server, with sglang.launch_server's flags where the
// meaning is the same. Loads the model (the embedded demo model without --model-path), sizes the KV
// pool, starts the engine and the HTTP server, and on SIGINT/SIGTERM aborts what is running,
// finishes the responses and exits 0.
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "backend/backend.h"
#include "chat/encoder.h"
#include "chat/tool_parser.h"
#include "cli/commands.h"
#include "cli/demo_model.h"
#include "cli/flag_suggestions.h"
#include "cli/make_backend.h"
#include "cli/serve_nodes.h"
#include "cli/serve_replica.h"
#include "disagg/pd_handoff.h"
#include "runtime/remote_nodes.h"
#include "cli/serve_shutdown.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/kv_dtype.h"
#include "runtime/kv_plan.h"
#include "runtime/model_runner.h"
#include "runtime/parallel_config.h"
#include "runtime/step_recorder.h"
#include "server/api_server.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::cli {
namespace {

namespace fs = std::filesystem;

// --disaggregation-kv-buffer-gb in bytes; 0 asks for a quarter of the host's physical memory (the packed KV
// a prefill server holds waits in host memory until a decode server takes it).
int64_t pd_kv_buffer_limit(double gb) {
  if (gb > 0) return int64_t(gb * 1e9);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * page / 4 : int64_t(16) << 30;
}

struct ServeFlags {
  std::string model_path, tokenizer_path, host = "127.0.0.1", served_model_name, reasoning_parser, tool_call_parser,
                                          chat_template, encoder = "auto", schedule_policy = "fcfs",
                                          kv_cache_dtype = "auto", api_key, log_level = "info", device = "cpu",
                                          indexer = "fp32", load_format = "auto";
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
       skip_server_warmup = false, disable_cuda_graph = false, cuda_graph_lazy = false;
};

constexpr double kCpuDefaultMemFraction = 0.1;    // of available RAM: the CPU backend is for tests and the demo
constexpr double kCudaDefaultMemFraction = 0.85;  // of free GPU memory, weights included (SGLang's meaning)


void add_flags(CLI::App* cmd, ServeFlags& f) {
  cmd->add_option("--model-path,--model", f.model_path,
                  "checkpoint directory (config.json + safetensors); default: the embedded demo model");
  cmd->add_option("--tokenizer-path", f.tokenizer_path, "tokenizer.json or its directory (default: the model's)");
  cmd->add_option("--load-format", f.load_format,
                  "auto / safetensors: the checkpoint's weights; dummy: random weights of config.json's shapes made "
                  "in each rank's memory (no safetensors needed; outputs are noise)")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}))
      ->capture_default_str();
  cmd->add_option("--host", f.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", f.port, "port to listen on")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--served-model-name", f.served_model_name, "model name in the API (default: the model path)");
  cmd->add_option("--tp,--tp-size", f.tp, "tensor parallel size: GPUs (or CPU ranks) one replica is cut over");
  cmd->add_option("--dp,--dp-size", f.dp,
                  "data parallel size: replicas of --tp ranks each, or with --enable-dp-attention groups inside the --tp ranks");
  cmd->add_option("--ep,--ep-size", f.ep, "expert parallel size: 1, or --tp for whole experts per rank");
  cmd->add_flag("--enable-dp-attention", f.enable_dp_attention,
                "data-parallel attention: --dp groups of the --tp ranks each serve their own requests; MoE over all ranks");
  cmd->add_option("--moe-dense-tp-size", f.moe_dense_tp_size,
                  "1: dense MLP layers inside each DP group (with --enable-dp-attention); default: over all ranks");
  cmd->add_option("--base-gpu-id", f.base_gpu_id, "first GPU of this server (rank r uses base + r * step)")
      ->capture_default_str();
  cmd->add_option("--gpu-id-step", f.gpu_id_step, "GPU id step between ranks")->capture_default_str();
  cmd->add_option("--nnodes", f.nnodes, "nodes of the deployment (one process each; the ranks split evenly)")
      ->capture_default_str();
  cmd->add_option("--node-rank", f.node_rank, "this node's rank; node 0 serves HTTP")->capture_default_str();
  cmd->add_option("--dist-init-addr", f.dist_init_addr, "HOST:PORT where node 0 listens for the other nodes");
  cmd->add_option("--reasoning-parser", f.reasoning_parser, "deepseek-v3: reasoning_content from <think> ... </think>");
  cmd->add_option("--tool-call-parser", f.tool_call_parser, "deepseekv31 or deepseekv32: tool_calls from the output");
  cmd->add_option("--chat-template", f.chat_template, "a .jinja file or tokenizer_config.json (known templates only)");
  cmd->add_option("--encoder", f.encoder, "chat format: auto (from the checkpoint), dsv32 or v31")
      ->check(CLI::IsMember({"auto", "dsv32", "v31"}));
  cmd->add_option("--context-length", f.context_length, "max prompt + output tokens (default: the model's)");
  cmd->add_option("--mem-fraction-static", f.mem_fraction_static,
                  fmt::format("fraction of available memory for the KV pool (CPU default {})", kCpuDefaultMemFraction));
  cmd->add_option("--max-running-requests", f.max_running_requests,
                  "requests decoding at once (default 256; 48 with speculative decoding, as SGLang)");
  cmd->add_option("--max-queued-requests", f.max_queued_requests, "waiting requests beyond this get 503")
      ->capture_default_str();
  cmd->add_option("--max-total-tokens", f.max_total_tokens, "KV pool size in tokens (default: from memory)");
  cmd->add_option("--chunked-prefill-size", f.chunked_prefill_size, "prompt tokens per request per step (-1: all)")
      ->capture_default_str();
  cmd->add_option("--max-prefill-tokens", f.max_prefill_tokens, "prompt tokens of all requests per step")
      ->capture_default_str();
  cmd->add_option("--page-size", f.page_size, "tokens per KV page")->capture_default_str();
  cmd->add_flag("--disable-radix-cache", f.disable_radix_cache, "no prefix cache");
  cmd->add_flag("--disable-regex-jump-forward", f.disable_regex_jump_forward,
                "structured outputs: sample every token, also where the grammar allows one continuation only "
                "(default: such runs are appended at once, without a forward pass per token)");
  cmd->add_option("--grammar-ahead-min-requests", f.grammar_ahead_min_requests,
                  "structured outputs: a step's grammar work after its draws (advance, jump-forward) runs in "
                  "parallel over requests once this many of them have a grammar (0: always on the engine thread)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_flag("--constrained-json-disable-any-whitespace", f.constrained_json_disable_any_whitespace,
                "JSON schema / json_object outputs: no free whitespace, members separated by \", \" and keys by "
                "\": \" (fixed keys are then forced text that jump-forward appends at once)");
  cmd->add_option("--cuda-graph-max-bs", f.cuda_graph_max_bs,
                  "cuda: decode steps of up to this many requests replay a recorded CUDA graph (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  cmd->add_flag("--disable-cuda-graph", f.disable_cuda_graph, "cuda: run every step op by op");
  cmd->add_flag("--cuda-graph-lazy", f.cuda_graph_lazy,
                "cuda: record each decode shape at its first step instead of all of them at start-up");
  cmd->add_option("--schedule-policy", f.schedule_policy, "fcfs or lpm (longest cached prefix first)")
      ->capture_default_str();
  cmd->add_option("--kv-cache-dtype", f.kv_cache_dtype,
                  "KV cache: auto (cuda: bf16 as SGLang; cpu: fp32), bf16 / bfloat16 (cuda), fp32 / float32, fp8_e4m3 "
                  "(DeepSeek's 656-byte latent + 132-byte indexer key rows per layer)")
      ->capture_default_str();
  cmd->add_option("--indexer", f.indexer,
                  "lightning indexer numerics: fp32 (transformers' DeepseekV32) or fp8 (DeepSeek's: Hadamard-rotated e4m3 "
                  "queries and keys; on cuda their prefill scores run on FP8 tensor cores); dsserve's own, the same on "
                  "both sides of a prefill/decode pair")
      ->capture_default_str();
  cmd->add_option("--speculative-algorithm", f.speculative_algorithm,
                  "EAGLE or NEXTN (the same here): speculative decoding with the checkpoint's MTP layer as the draft");
  cmd->add_option("--speculative-num-steps", f.speculative_num_steps, "draft tokens per step (default 3)");
  cmd->add_option("--speculative-eagle-topk", f.speculative_eagle_topk, "draft branches per step: 1 (no trees)");
  cmd->add_option("--speculative-num-draft-tokens", f.speculative_num_draft_tokens,
                  "tokens verified per step: --speculative-num-steps + 1 with topk 1");
  cmd->add_option("--speculative-min-accept-length", f.speculative_min_accept_length,
                  "when the last 8 verify steps emitted fewer tokens per request than this, speculation pauses for "
                  "256 steps, then tries again (dsserve's own; 0: never)")
      ->capture_default_str();
  cmd->add_option("--speculative-draft-head", f.speculative_draft_head,
                  "the LM head the drafts read: shared (the checkpoint's), fp8 (a block-scaled FP8 copy made at load: "
                  "half a BF16 head's bytes per draft pass; outputs unchanged) or auto (fp8 on cuda, shared on cpu; "
                  "dsserve's own)")
      ->check(CLI::IsMember({"auto", "shared", "fp8"}))
      ->capture_default_str();
  cmd->add_option("--speculative-draft-model-path", f.speculative_draft_model_path,
                  "the draft model: the checkpoint's own MTP layer (empty or --model-path)");
  cmd->add_option("--disaggregation-mode", f.disaggregation_mode,
                  "null, prefill or decode: prefill/decode disaggregation behind `dsserve router --pd-disaggregation`")
      ->capture_default_str();
  cmd->add_option("--disaggregation-bootstrap-port", f.disaggregation_bootstrap_port,
                  "prefill: where decode servers ask for KV (0: any free port, printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--disaggregation-transfer-backend", f.disaggregation_transfer_backend,
                  "KV transfer: ucx (shared memory on one host, TCP or RDMA across hosts)")
      ->capture_default_str();
  cmd->add_option("--disaggregation-ib-device", f.disaggregation_ib_device,
                  "accepted; UCX picks the RDMA devices (UCX_NET_DEVICES selects them)");
  cmd->add_option("--disaggregation-transfer-timeout", f.disaggregation_transfer_timeout,
                  "seconds a request's KV may take to reach the decode server before both sides drop it")
      ->capture_default_str();
  cmd->add_option("--disaggregation-kv-buffer-gb", f.disaggregation_kv_buffer_gb,
                  "prefill: GB of packed KV held at once for decode servers; a prompt beyond it fails its hand-off "
                  "(0: a quarter of the host's memory)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--api-key", f.api_key, "require 'Authorization: Bearer KEY'");
  cmd->add_option("--limit-concurrency", f.limit_concurrency,
                  "open connections beyond this get 503 (uvicorn's flag; default: from the open-file limit)");
  cmd->add_option("--shutdown-timeout", f.shutdown_timeout,
                  "on SIGTERM/SIGINT: seconds running requests may take to finish before they are aborted "
                  "(vLLM's flag; 0: abort at once)")
      ->capture_default_str();
  cmd->add_flag("--enable-metrics", f.enable_metrics, "Prometheus metrics at /metrics");
  cmd->add_option("--log-level", f.log_level, "debug, info, warning or error")->capture_default_str();
  cmd->add_option("--random-seed", f.random_seed, "seed for requests without a seed (default: random)");
  cmd->add_option("--device", f.device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--threads", f.threads, "CPU backend threads (0: all cores)");
  cmd->add_flag("--trust-remote-code", f.trust_remote_code, "accepted for compatibility; no effect");
  cmd->add_flag("--skip-server-warmup", f.skip_server_warmup, "accepted for compatibility; no effect");
}

// Unknown flags: an error naming them with the closest known ones.
void reject_extras(CLI::App* cmd) {
  auto extras = cmd->remaining();
  if (extras.empty()) return;
  std::vector<std::string> known;
  for (const CLI::Option* o : cmd->get_options())
    for (const auto& n : o->get_lnames()) known.push_back("--" + n);
  std::string msg;
  bool after_flag = false;  // a bare word right after an unknown flag is taken as its value
  for (const auto& e : extras) {
    if (e.rfind('-', 0) != 0) {
      if (!after_flag) msg += fmt::format("\n  unexpected argument '{}'", e);
      after_flag = false;
      continue;
    }
    auto close = close_flags(e, known);
    msg += fmt::format("\n  unknown flag {}", e);
    if (!close.empty()) msg += " (did you mean " + fmt::format("{}", fmt::join(close, ", ")) + "?)";
    after_flag = e.find('=') == std::string::npos;
  }
  fail("serve:{}\nrun 'dsserve serve --help' for the flags", msg);
}

runtime::ParallelConfig parallel_config(const ServeFlags& f) {
  runtime::ParallelConfig p;
  p.tp = f.tp;
  p.dp = f.dp;
  p.ep = f.ep;
  p.dp_attention = f.enable_dp_attention;
  p.moe_dense_local = f.moe_dense_tp_size == 1;
  return p;
}

// The draft tokens per step of --speculative-*, 0 when speculative decoding is off. SGLang's rules: topk 1
// verifies a chain of num_steps drafts, so num_draft_tokens must be num_steps + 1.
int32_t speculative_steps(const ServeFlags& f) {
  if (f.speculative_algorithm.empty()) return 0;
  return f.speculative_num_steps > 0 ? f.speculative_num_steps
         : f.speculative_num_draft_tokens > 1 ? f.speculative_num_draft_tokens - 1
                                              : 3;
}

// What every rank loads: the indexer's numerics and, with speculative decoding, the draft head
// --speculative-draft-head asks for.
ReplicaFlags replica_flags(const ServeFlags& f) {
  ReplicaFlags rf{f.device, f.threads, f.base_gpu_id, f.gpu_id_step, {}, f.load_format == "dummy"};
  if (speculative_steps(f) > 0) rf.model_options.draft_head = model::draft_head_named(f.speculative_draft_head, f.device);
  rf.model_options.indexer = model::indexer_mode_named(f.indexer);
  return rf;
}

void validate_speculative(const ServeFlags& f) {
  if (f.speculative_algorithm.empty()) {
    DS_CHECK(f.speculative_num_steps == 0 && f.speculative_eagle_topk == 0 && f.speculative_num_draft_tokens == 0 &&
                 f.speculative_draft_model_path.empty() && f.speculative_draft_head == "auto",
             "--speculative-* flags need --speculative-algorithm EAGLE (or NEXTN)");
    return;
  }
  std::string algo = f.speculative_algorithm;
  for (auto& ch : algo) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  DS_CHECK(algo == "EAGLE" || algo == "NEXTN",
           "--speculative-algorithm {}: not supported; EAGLE or NEXTN (the checkpoint's MTP layer drafts)",
           f.speculative_algorithm);
  DS_CHECK(f.speculative_eagle_topk <= 1,
           "--speculative-eagle-topk {}: only 1 is supported (a chain of drafts; draft trees are not built yet)",
           f.speculative_eagle_topk);
  const int32_t steps = speculative_steps(f);
  DS_CHECK(steps >= 1 && steps <= 16, "--speculative-num-steps must be in [1, 16], got {}", steps);
  DS_CHECK(f.speculative_num_draft_tokens == 0 || f.speculative_num_draft_tokens == steps + 1,
           "--speculative-num-draft-tokens {} with --speculative-eagle-topk 1 must be --speculative-num-steps + 1 = {}",
           f.speculative_num_draft_tokens, steps + 1);
  DS_CHECK(f.speculative_draft_model_path.empty() || f.speculative_draft_model_path == f.model_path,
           "--speculative-draft-model-path: only the checkpoint's own MTP layer drafts (leave it out or give --model-path)");
}

void validate(const ServeFlags& f) {
  DS_CHECK(f.moe_dense_tp_size == 0 || f.moe_dense_tp_size == 1,
           "--moe-dense-tp-size {}: only 1 is supported (dense layers inside each DP group; SGLang's rule too)",
           f.moe_dense_tp_size);
  parallel_config(f).validate();
  validate_nodes(NodeFlags{f.nnodes, f.node_rank, f.dist_init_addr}, parallel_config(f), f.device);
  DS_CHECK(f.device == "cpu" || f.device == "cuda", "--device must be cpu or cuda, got '{}'", f.device);
  DS_CHECK(f.reasoning_parser.empty() || f.reasoning_parser == "deepseek-v3",
           "--reasoning-parser '{}' is not supported; this server has deepseek-v3", f.reasoning_parser);
  DS_CHECK(f.tool_call_parser.empty() || chat::is_tool_parser_name(f.tool_call_parser),
           "--tool-call-parser '{}' is not supported; this server has deepseekv31 and deepseekv32", f.tool_call_parser);
  DS_CHECK(f.schedule_policy == "fcfs" || f.schedule_policy == "lpm",
           "--schedule-policy '{}' is not supported; use fcfs or lpm", f.schedule_policy);
  DS_CHECK(f.indexer == "fp32" || f.indexer == "fp8", "--indexer '{}' is not one of fp32, fp8", f.indexer);
  DS_CHECK(f.kv_cache_dtype != "fp8_e5m2", "--kv-cache-dtype fp8_e5m2: not supported; DeepSeek's FP8 KV layout is fp8_e4m3");
  const auto& kv_names = runtime::kv_cache_dtype_names();
  DS_CHECK(std::find(kv_names.begin(), kv_names.end(), f.kv_cache_dtype) != kv_names.end(),
           "--kv-cache-dtype '{}' is not one of auto, bf16, bfloat16, fp32, float32, fp8_e4m3", f.kv_cache_dtype);
  DS_CHECK(f.page_size >= 1, "--page-size must be >= 1, got {}", f.page_size);
  DS_CHECK(f.chunked_prefill_size == -1 || f.chunked_prefill_size >= 1,
           "--chunked-prefill-size must be -1 or >= 1, got {}", f.chunked_prefill_size);
  DS_CHECK(f.max_running_requests >= 0, "--max-running-requests must be >= 1, got {}", f.max_running_requests);
  validate_speculative(f);
  DS_CHECK(f.disaggregation_mode == "null" || f.disaggregation_mode == "prefill" || f.disaggregation_mode == "decode",
           "--disaggregation-mode must be null, prefill or decode, got '{}'", f.disaggregation_mode);
  DS_CHECK(f.disaggregation_mode == "null" || f.nnodes == 1,
           "--disaggregation-mode with --nnodes {}: not built (the other nodes' KV pools cannot be sent yet)", f.nnodes);
  DS_CHECK(f.disaggregation_transfer_timeout > 0, "--disaggregation-transfer-timeout must be > 0");
  DS_CHECK(f.disaggregation_mode == "null" || disagg::have_ucx(),
           "--disaggregation-mode {}: this dsserve was built without UCX (libucx-dev), which carries the KV between "
           "the prefill and the decode server", f.disaggregation_mode);
  DS_CHECK(f.max_queued_requests >= 0, "--max-queued-requests must be >= 0, got {}", f.max_queued_requests);
  DS_CHECK(f.max_prefill_tokens >= 1, "--max-prefill-tokens must be >= 1, got {}", f.max_prefill_tokens);
  DS_CHECK(f.context_length >= 0, "--context-length must be >= 1, got {}", f.context_length);
  DS_CHECK(f.max_total_tokens >= 0, "--max-total-tokens must be >= 1, got {}", f.max_total_tokens);
  DS_CHECK(f.limit_concurrency >= 0, "--limit-concurrency must be >= 1, got {}", f.limit_concurrency);
  DS_CHECK(f.shutdown_timeout >= 0 && f.shutdown_timeout <= 86400, "--shutdown-timeout must be in [0, 86400] seconds, got {}",
           f.shutdown_timeout);
  DS_CHECK(f.mem_fraction_static >= 0 && f.mem_fraction_static <= 1, "--mem-fraction-static must be in (0, 1], got {}",
           f.mem_fraction_static);
}

bool is_deepseek_v32(const chat::CheckpointChatInfo& info) {
  if (info.model_type == "deepseek_v32") return true;
  for (const auto& a : info.architectures)
    if (a == "DeepseekV32ForCausalLM") return true;
  return false;
}

std::unique_ptr<chat::ChatEncoder> chat_encoder(const ServeFlags& f, const std::string& model_dir,
                                                const std::string& tokenizer_dir, bool demo) {
  chat::CheckpointChatInfo info = chat::read_checkpoint_chat_info(model_dir);  // config.json
  if (tokenizer_dir != model_dir) info.chat_template = chat::read_checkpoint_chat_info(tokenizer_dir).chat_template;
  std::optional<std::string> tmpl;
  if (!f.chat_template.empty()) tmpl = chat::load_chat_template_file(f.chat_template);
  // The demo model is a V3.2 model whose npm tokenizer_config carries DeepSeek-V3's template: V3.2's format.
  std::string which = demo && f.encoder == "auto" && !tmpl ? "dsv32" : f.encoder;
  try {
    return chat::select_encoder(info, which, tmpl);
  } catch (const ds::Error& e) {
    // A V3.2 checkpoint whose tokenizer_config carries a template we cannot render (not one of the
    // known fingerprints): V3.2's own format is the right one for the model; say so loudly.
    if (which != "auto" || tmpl || !is_deepseek_v32(info)) throw;
    spdlog::warn("{}", e.what());
    spdlog::warn("serving chat with DeepSeek-V3.2's own format (dsv32) instead; --encoder or --chat-template chooses");
    return chat::make_dsv32_encoder();
  }
}

server::Json server_args(const ServeFlags& f, const std::string& model_path, const std::string& served,
                         int64_t context_length, int64_t max_total_tokens, uint64_t seed) {
  server::Json j = server::Json::object();
  j["model_path"] = model_path;
  j["tokenizer_path"] = f.tokenizer_path.empty() ? model_path : f.tokenizer_path;
  j["load_format"] = f.load_format;
  j["served_model_name"] = served;
  j["host"] = f.host;
  j["port"] = f.port;
  j["tp_size"] = f.tp;
  j["dp_size"] = f.dp;
  j["ep_size"] = f.ep;
  j["enable_dp_attention"] = f.enable_dp_attention;
  j["context_length"] = context_length;
  j["max_running_requests"] = f.max_running_requests;
  j["disaggregation_mode"] = f.disaggregation_mode;
  j["disaggregation_bootstrap_port"] = f.disaggregation_bootstrap_port;
  j["disaggregation_transfer_backend"] = f.disaggregation_transfer_backend;
  j["speculative_algorithm"] = f.speculative_algorithm.empty() ? server::Json(nullptr) : server::Json(f.speculative_algorithm);
  j["speculative_num_steps"] = speculative_steps(f) ? server::Json(speculative_steps(f)) : server::Json(nullptr);
  j["speculative_eagle_topk"] = speculative_steps(f) ? server::Json(1) : server::Json(nullptr);
  j["speculative_num_draft_tokens"] = speculative_steps(f) ? server::Json(speculative_steps(f) + 1) : server::Json(nullptr);
  j["max_queued_requests"] = f.max_queued_requests;
  j["max_total_tokens"] = max_total_tokens;
  j["chunked_prefill_size"] = f.chunked_prefill_size;
  j["max_prefill_tokens"] = f.max_prefill_tokens;
  j["page_size"] = f.page_size;
  j["disable_radix_cache"] = f.disable_radix_cache;
  j["disable_regex_jump_forward"] = f.disable_regex_jump_forward;
  j["constrained_json_disable_any_whitespace"] = f.constrained_json_disable_any_whitespace;
  j["grammar_ahead_min_requests"] = f.grammar_ahead_min_requests;
  j["schedule_policy"] = f.schedule_policy;
  j["kv_cache_dtype"] = f.kv_cache_dtype;
  j["indexer"] = f.indexer;
  j["cuda_graph_max_bs"] = f.disable_cuda_graph ? 0 : f.cuda_graph_max_bs;
  j["mem_fraction_static"] = f.mem_fraction_static;
  j["reasoning_parser"] = f.reasoning_parser.empty() ? server::Json(nullptr) : server::Json(f.reasoning_parser);
  j["tool_call_parser"] = f.tool_call_parser.empty() ? server::Json(nullptr) : server::Json(f.tool_call_parser);
  j["enable_metrics"] = f.enable_metrics;
  j["random_seed"] = seed;
  j["device"] = f.device;
  j["limit_concurrency"] = f.limit_concurrency;
  j["shutdown_timeout"] = f.shutdown_timeout;
  j["api_key"] = f.api_key.empty() ? server::Json(nullptr) : server::Json("<set>");
  return j;
}

// The engine's fatal error (a rank failed): recorded, then SIGTERM to ourselves wakes the main thread's
// sigwait, which stops the server and exits 1.
std::mutex fatal_mu;
std::string fatal_why;
void request_fatal_stop(const std::string& why) {
  {
    std::lock_guard lk(fatal_mu);
    if (!fatal_why.empty()) return;
    fatal_why = why;
  }
  kill(getpid(), SIGTERM);
}
std::string fatal_stop_reason() {
  std::lock_guard lk(fatal_mu);
  return fatal_why;
}

// Blocks SIGINT/SIGTERM in this thread and every thread started after it; sigwait() takes them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

void run_serve(CLI::App* cmd, const ServeFlags& given) {
  const sigset_t stop_signals = block_stop_signals();  // before any thread exists
  init_logging(given.log_level);
  reject_extras(cmd);
  validate(given);
  ServeFlags flags = given;
  const int32_t spec_steps = speculative_steps(flags);
  if (flags.max_running_requests == 0) flags.max_running_requests = spec_steps > 0 ? 48 : 256;
  if (flags.enable_dp_attention && flags.dp == 1) spdlog::warn("--enable-dp-attention has no effect with --dp 1");

  const bool demo = flags.model_path.empty();
  const std::string model_path = demo ? ensure_demo_model() : flags.model_path;
  const std::string tokenizer_path = flags.tokenizer_path.empty() ? model_path : flags.tokenizer_path;
  const std::string served = !flags.served_model_name.empty() ? flags.served_model_name
                             : demo                           ? "dsserve-demo"
                                                              : model_path;
  // Before the tokenizer and the chat template, which would otherwise report their own consequences.
  if (!demo) {
    DS_CHECK(fs::is_directory(model_path), "--model-path {}: no such directory", model_path);
    DS_CHECK(fs::is_regular_file(fs::path(model_path) / "config.json"),
             "--model-path {}: config.json not found (a checkpoint directory holds config.json and *.safetensors)",
             model_path);
  }
  if (flags.load_format == "dummy")
    spdlog::warn("--load-format dummy: random weights of {}'s config.json (benchmarks; the outputs are noise)",
                 model_path);
  if (demo)
    spdlog::info("no --model-path: serving the embedded demo model ({}; random weights, gibberish by design)",
                 model_path);

  if (flags.nnodes > 1 && flags.node_rank > 0) {  // a node other than 0 runs its ranks only: no HTTP, no tokenizer
    std::thread([stop_signals] {
      int sig = 0;
      sigset_t set = stop_signals;
      sigwait(&set, &sig);
      spdlog::warn("{}: this node stops (node 0 then stops too)", sig == SIGINT ? "SIGINT" : "SIGTERM");
      spdlog::default_logger()->flush();
      std::_Exit(0);
    }).detach();
    const runtime::ParallelConfig parallel = parallel_config(flags);
    const ReplicaFlags rf = replica_flags(flags);
    NodeSet node(NodeFlags{flags.nnodes, flags.node_rank, flags.dist_init_addr}, parallel);
    const int code = node.serve_as_worker(node.load(model_path, rf), rf);
    spdlog::default_logger()->flush();
    std::fflush(nullptr);
    std::_Exit(code);
  }

  tok::Tokenizer tokenizer = tok::Tokenizer::load(tokenizer_path);
  const fs::path tok_dir =
      fs::is_directory(tokenizer_path) ? fs::path(tokenizer_path) : fs::path(tokenizer_path).parent_path();
  std::unique_ptr<chat::ChatEncoder> encoder = chat_encoder(flags, model_path, tok_dir.string(), demo);
  server::SamplingDefaults sampling_defaults = server::load_sampling_defaults(model_path);

  Timer load_timer;
  const runtime::ParallelConfig parallel = parallel_config(flags);
  const ReplicaFlags rf = replica_flags(flags);
  std::unique_ptr<NodeSet> nodes;
  if (flags.nnodes > 1)
    nodes = std::make_unique<NodeSet>(NodeFlags{flags.nnodes, flags.node_rank, flags.dist_init_addr}, parallel);
  runtime::Replica replica = nodes ? nodes->load(model_path, rf) : load_serving_replica(model_path, parallel, rf);
  backend::Backend& backend0 = replica.models[0]->backend();
  const model::Model& model0 = *replica.models[0];
  const auto& mc = model0.config();
  spdlog::info("loaded {} ({}, {} layers{}, vocab {}) on {}{} in {:.1f} s", model_path, mc.model_type,
               mc.num_hidden_layers, model0.has_mtp() ? " + MTP" : "", mc.vocab_size, backend0.name(),
               parallel.world_size() > 1
                   ? fmt::format(" x {} ranks ({}){}", parallel.world_size(), parallel.describe(),
                                 nodes ? fmt::format(" over {} nodes, {} on this one", flags.nnodes, replica.size()) : "")
                   : "",
               load_timer.seconds());
  DS_CHECK(spec_steps == 0 || model0.has_mtp(),
           "--speculative-algorithm {}: the checkpoint {} has no MTP layer to draft with (num_nextn_predict_layers "
           "is 0 or the weights model.layers.{}.* are missing)",
           flags.speculative_algorithm, model_path, mc.num_hidden_layers);

  int64_t context_length = flags.context_length > 0 ? flags.context_length
                           : demo                     ? kDemoContextLength
                                                      : mc.max_position_embeddings;
  if (demo && flags.context_length <= 0)
    spdlog::info("demo model: context length {} (never ends on its own; --context-length N to change)",
                 context_length);
  if (context_length <= 0) context_length = 4096;
  DS_CHECK(mc.max_position_embeddings <= 0 || context_length <= mc.max_position_embeddings,
           "--context-length {} is longer than the model's max_position_embeddings {}", context_length,
           mc.max_position_embeddings);

  const DType kv_dtype = runtime::resolve_kv_cache_dtype(flags.kv_cache_dtype, backend0);
  runtime::KvPlanInput kin;
  // Every rank keeps the whole latent of every token (MLA's KV is shared by the heads).
  kin.bytes_per_token = model::KVCache::bytes_per_token(mc, kv_dtype, backend0.act_dtype(), model0.has_mtp());
  kin.max_total_tokens = flags.max_total_tokens;
  if (flags.device == "cuda") {
    // As SGLang: the fraction covers weights + KV of the memory free at start; the weights are in. All
    // ranks get the same pool (one scheduler plans for all): the tightest rank decides.
    kin.mem_fraction = flags.mem_fraction_static > 0 ? flags.mem_fraction_static : kCudaDefaultMemFraction;
    kin.memory_name = "free GPU memory";
  } else {
    // CPU ranks share the host's memory: each keeps a pool of its own.
    kin.mem_fraction = flags.mem_fraction_static > 0 ? flags.mem_fraction_static : kCpuDefaultMemFraction;
    kin.memory_name = replica.size() > 1 ? "available RAM per rank" : "available RAM";
  }
  const RankMemory mem = replica_memory(replica, flags.device);
  kin.available_bytes = mem.available;
  kin.reserved_bytes = mem.reserved;
  if (nodes)  // every node's pool is the same: the tightest node decides
    std::tie(kin.available_bytes, kin.reserved_bytes) = nodes->tightest_memory(kin.available_bytes, kin.reserved_bytes);
  // Under DP attention the groups share --max-running-requests (SGLang divides it the same way); replicas
  // (--dp without it) each take the whole. Each group's pool is planned for its own share.
  const int32_t dp_groups = parallel.world_size() / replica.group_size;
  const int32_t running_per_group =
      parallel.dp_attention ? std::max(1, flags.max_running_requests / dp_groups) : flags.max_running_requests;
  kin.max_running_requests = running_per_group;
  kin.context_length = context_length;
  kin.page_size = flags.page_size;
  runtime::KvPlan plan = runtime::plan_kv_pool(kin);

  runtime::EngineConfig ec;
  ec.page_size = flags.page_size;
  ec.max_total_tokens = plan.tokens;  // per DP group: each keeps the KV of its own requests
  ec.max_running_requests = running_per_group;
  ec.max_queued_requests = flags.max_queued_requests;
  ec.chunked_prefill_size = flags.chunked_prefill_size;
  ec.max_prefill_tokens = flags.max_prefill_tokens;
  ec.context_length = int32_t(std::min<int64_t>(context_length, INT32_MAX));
  ec.enable_radix_cache = !flags.disable_radix_cache;
  ec.schedule_policy = flags.schedule_policy == "lpm" ? runtime::SchedulePolicy::Lpm : runtime::SchedulePolicy::Fcfs;
  ec.random_seed = flags.random_seed ? *flags.random_seed : std::random_device{}();
  for (auto id : mc.eos_token_ids) ec.eos_token_ids.push_back(int32_t(id));
  if (ec.eos_token_ids.empty() && tokenizer.eos_id() >= 0) ec.eos_token_ids.push_back(tokenizer.eos_id());

  runtime::RunnerConfig rc;
  rc.num_pages = int32_t(plan.tokens / flags.page_size);
  rc.page_size = flags.page_size;
  rc.kv_cache_dtype = kv_dtype;
  rc.cuda_graph_max_bs = flags.disable_cuda_graph ? 0 : flags.cuda_graph_max_bs;
  rc.cuda_graph_lazy = flags.cuda_graph_lazy;
  rc.draft_steps = spec_steps;
  ec.speculative_num_steps = spec_steps;
  ec.speculative_min_accept_length = flags.speculative_min_accept_length;
  ec.jump_forward = !flags.disable_regex_jump_forward;
  ec.grammar_ahead_min_requests = flags.grammar_ahead_min_requests;
  const std::string backend_name = backend0.name();
  RankRunners runners = make_rank_runners(replica, rc, parallel, rf);  // this node's ranks
  const std::vector<runtime::ModelRunner*>& runner_ptrs = runners.all;
  if (parallel.dp_attention && rc.cuda_graph_max_bs > 0 && flags.cuda_graph_lazy)
    spdlog::warn("--cuda-graph-lazy has no effect with --enable-dp-attention: every rank records at start-up");
  if (nodes) nodes->send_config(rc, ec.max_running_requests, ec.context_length);  // they record at the same time
  record_graphs_on_all(runner_ptrs, ec.max_running_requests, ec.context_length);
  std::unique_ptr<runtime::RemoteNodes> remote;
  if (nodes) {
    nodes->wait_ready();
    remote = std::make_unique<runtime::RemoteNodes>(nodes->connections(), [runner_ptrs](const std::string& why) {
      for (auto* r : runner_ptrs) r->model().tensor_parallel().abort(why);
    });
    ec.remote = remote.get();
  }
  auto stop_nodes = [&] {
    if (remote) remote->stop();
  };
  // A failed rank leaves the replica unusable: stop the server (exit 1) with the rank's message.
  ec.on_fatal = [](const std::string& why) { request_fatal_stop(why); };
  std::unique_ptr<disagg::PdHandoff> handoff;  // outlives the engine
  if (flags.disaggregation_mode != "null") {
    disagg::PdConfig pc;
    pc.mode = flags.disaggregation_mode == "prefill" ? runtime::DisaggMode::Prefill : runtime::DisaggMode::Decode;
    pc.bootstrap_host = flags.host;
    pc.bootstrap_port = flags.disaggregation_bootstrap_port;
    pc.transfer_backend = flags.disaggregation_transfer_backend;
    pc.timeout_s = flags.disaggregation_transfer_timeout;
    handoff = disagg::make_pd_handoff(pc);
    ec.kv_handoff = handoff.get();
    ec.pd_kv_buffer_limit_bytes = pd_kv_buffer_limit(flags.disaggregation_kv_buffer_gb);
  }
  auto engine = runtime::make_dp_engine(ec, runners.groups, tokenizer);

  server::ServerConfig sc;
  sc.served_model_name = served;
  sc.model_path = model_path;
  sc.tokenizer_path = fs::absolute(tokenizer_path).string();
  if (!flags.api_key.empty()) sc.api_key = flags.api_key;
  sc.context_length = context_length;
  sc.model_vocab_size = int32_t(mc.vocab_size);
  sc.reasoning_parser = flags.reasoning_parser == "deepseek-v3";
  sc.tool_call_parser = flags.tool_call_parser;
  sc.enable_metrics = flags.enable_metrics;
  sc.sampling_defaults = sampling_defaults;
  sc.json_grammar.fixed_separators = flags.constrained_json_disable_any_whitespace;
  sc.server_args = server_args(flags, model_path, served, context_length, plan.tokens, ec.random_seed);
  const std::string encoder_name = encoder ? encoder->name() : "none";
  server::ApiServer api(std::move(sc), *engine, tokenizer, std::move(encoder));

  server::HttpServerOptions ho;
  ho.host = flags.host;
  ho.port = uint16_t(flags.port);
  ho.max_connections = flags.limit_concurrency > 0 ? size_t(flags.limit_concurrency) : server::default_connection_limit();
  server::HttpServer http(ho, [&api](server::HttpRequest&& req, std::shared_ptr<server::Responder> r) {
    api.handle(std::move(req), std::move(r));
  });
  http.listen();
  api.state().config.server_args["port"] = http.port();  // --port 0 picks one
  api.state().config.server_args["limit_concurrency"] = ho.max_connections;
  api.state().config.server_args["kv_cache_dtype_resolved"] = runtime::kv_cache_dtype_label(kv_dtype);
  api.state().config.server_args["kv_cache_bytes_per_token"] = kin.bytes_per_token;
  api.state().config.server_args["kv_cache_pool_tokens"] = plan.tokens;
  if (handoff && handoff->mode() == runtime::DisaggMode::Prefill)
    api.state().config.server_args["disaggregation_bootstrap_port"] = handoff->bootstrap_port();
  http.start();

  const std::string url = fmt::format(
      "http://{}:{}", flags.host.find(':') != std::string::npos ? "[" + flags.host + "]" : flags.host, http.port());
  spdlog::info("dsserve 0.1.0 serving '{}' on {} ({} backend, {})", served, url, backend_name, parallel.describe());
  spdlog::info("  KV pool: {} ({} cache){}", plan.why, runtime::kv_cache_dtype_label(kv_dtype),
               dp_groups > 1 ? fmt::format(", one per DP group x {}", dp_groups) : "");
  spdlog::info("  context length {}, max running requests {}{}, chunked prefill {}, radix cache {}, schedule {}",
               context_length, ec.max_running_requests, dp_groups > 1 ? " per DP group" : "", ec.chunked_prefill_size,
               ec.enable_radix_cache ? "on" : "off",
               flags.schedule_policy);
  if (spec_steps > 0)
    spdlog::info("  speculative decoding: {} drafts per step from the MTP layer (topk 1, {} tokens verified)",
                 spec_steps, spec_steps + 1);
  if (handoff)
    spdlog::info("  disaggregation: {} server{}, KV over {}, transfer timeout {} s", flags.disaggregation_mode,
                 handoff->bootstrap_port() ? fmt::format(", bootstrap port {}", handoff->bootstrap_port()) : "",
                 flags.disaggregation_transfer_backend, flags.disaggregation_transfer_timeout);
  if (handoff && flags.disaggregation_mode == "prefill")
    spdlog::info("  KV held for decode servers: at most {:.1f} GB (--disaggregation-kv-buffer-gb)",
                 double(ec.pd_kv_buffer_limit_bytes) / 1e9);
  spdlog::info("  max queued requests {}, connection limit {}, shutdown timeout {} s", ec.max_queued_requests,
               ho.max_connections, flags.shutdown_timeout);
  spdlog::info("  chat format {}, reasoning parser {}, tool-call parser {}, metrics {}, API key {}", encoder_name,
               flags.reasoning_parser.empty() ? "off" : flags.reasoning_parser,
               flags.tool_call_parser.empty() ? "off" : flags.tool_call_parser, flags.enable_metrics ? "on" : "off",
               flags.api_key.empty() ? "off" : "required");
  spdlog::info("  OpenAI API at {}/v1 (chat/completions, completions, models), native /generate", url);
  spdlog::info("The server is fired up and ready to roll!");  // SGLang's line; scripts wait for it

  int sig = 0;
  sigwait(&stop_signals, &sig);
  if (const std::string why = fatal_stop_reason(); !why.empty()) {
    spdlog::critical("stopping: {}", why);
    shut_down_server(api, *engine, http, 0);
    stop_nodes();
    std::_Exit(1);
  }
  spdlog::info("{}: shutting down ({})", sig == SIGINT ? "SIGINT" : "SIGTERM",
               flags.shutdown_timeout > 0 ? fmt::format("running requests get up to {} s", flags.shutdown_timeout)
                                          : std::string("aborting running requests"));
  std::thread([stop_signals] {  // a second signal means: now
    int again = 0;
    sigset_t s = stop_signals;
    sigwait(&s, &again);
    std::_Exit(130);
  })
      .detach();
  const int rc_down = shut_down_server(api, *engine, http, flags.shutdown_timeout);
  stop_nodes();
  if (rc_down != 0) std::_Exit(1);
  spdlog::info("stopped");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (sglang.launch_server's flags)");
  auto flags = std::make_shared<ServeFlags>();
  add_flags(cmd, *flags);
  cmd->allow_extras();  // unknown flags get our error with close matches (reject_extras)
  cmd->callback([cmd, flags] { run_serve(cmd, *flags); });
}

}  // namespace ds::cli
