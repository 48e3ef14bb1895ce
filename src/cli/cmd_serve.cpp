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
#include "cli/serve_flags.h"
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
  j["indexer"] = model::indexer_mode_name(model::indexer_mode_for(f.indexer, f.device));
  j["cuda_graph_max_bs"] = f.disable_cuda_graph ? 0 : f.cuda_graph_max_bs;
  j["disable_custom_all_reduce"] = f.disable_custom_all_reduce;
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
  reject_unknown_serve_flags(cmd);
  validate_serve_flags(given);
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
  add_serve_flags(cmd, *flags);
  cmd->allow_extras();  // unknown flags get our error with close matches (reject_unknown_serve_flags)
  cmd->callback([cmd, flags] { run_serve(cmd, *flags); });
}

}  // namespace ds::cli
