// `dsserve serve`'s flags (serve_flags.h): their definitions, checks and meaning for the replica.
#include "cli/serve_flags.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <cctype>

#include "chat/tool_parser.h"
#include "cli/flag_suggestions.h"
#include "cli/serve_nodes.h"
#include "disagg/pd_handoff.h"
#include "runtime/kv_dtype.h"
#include "util/error.h"

namespace ds::cli {

// --disaggregation-kv-buffer-gb in bytes; 0 asks for a quarter of the host's physical memory (the packed KV
// a prefill server holds waits in host memory until a decode server takes it).
int64_t pd_kv_buffer_limit(double gb) {
  if (gb > 0) return int64_t(gb * 1e9);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * page / 4 : int64_t(16) << 30;
}

void add_serve_flags(CLI::App* cmd, ServeFlags& f) {
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
  cmd->add_flag("--disable-custom-all-reduce", f.disable_custom_all_reduce,
                "cuda: every all-reduce through NCCL, whatever DSSERVE_CUSTOM_AR_MAX_BYTES says (the custom all-reduce over peer memory is off by default until its checks pass)");
  cmd->add_flag("--cuda-graph-lazy", f.cuda_graph_lazy,
                "cuda: record each decode shape at its first step instead of all of them at start-up");
  cmd->add_option("--schedule-policy", f.schedule_policy, "fcfs or lpm (longest cached prefix first)")
      ->capture_default_str();
  cmd->add_option("--kv-cache-dtype", f.kv_cache_dtype,
                  "KV cache: auto (cuda: bf16 as SGLang; cpu: fp32), bf16 / bfloat16 (cuda), fp32 / float32, fp8_e4m3 "
                  "(DeepSeek's 656-byte latent + 132-byte indexer key rows per layer)")
      ->capture_default_str();
  cmd->add_option("--indexer", f.indexer,
                  "lightning indexer numerics: fp8 (DeepSeek's, as its inference code, SGLang and vLLM: Hadamard-rotated "
                  "e4m3 queries and keys; on cuda their prefill scores run on FP8 tensor cores), fp32 (transformers' "
                  "DeepseekV32), or auto (fp8 on cuda, fp32 on cpu); dsserve's own, the same on both sides of a "
                  "prefill/decode pair")
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
void reject_unknown_serve_flags(CLI::App* cmd) {
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
  ReplicaFlags rf{f.device, f.threads, f.base_gpu_id, f.gpu_id_step, {}, f.load_format == "dummy",
                  !f.disable_custom_all_reduce};
  if (speculative_steps(f) > 0) rf.model_options.draft_head = model::draft_head_named(f.speculative_draft_head, f.device);
  rf.model_options.indexer = model::indexer_mode_for(f.indexer, f.device);
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

void validate_serve_flags(const ServeFlags& f) {
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
  DS_CHECK(f.indexer == "auto" || f.indexer == "fp32" || f.indexer == "fp8", "--indexer '{}' is not one of auto, fp32, fp8",
           f.indexer);
  // Unknown names fail here; whether the backend has the type is checked once it is made.
  runtime::kv_cache_dtype_named(f.kv_cache_dtype, DType::BF16);
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

}  // namespace ds::cli
