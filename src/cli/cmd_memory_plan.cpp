// `dsserve memory-plan`: the GPU memory plan of a deployment before it runs — each rank's weights by part of
// the model (a dry run of the loader for every rank's cut: model/weight_bytes.h), the KV cache's bytes per
// token, and the KV pool serve would plan on GPUs of the given free memory (runtime/kv_plan.h, as serve's
// --mem-fraction-static). Nothing is allocated: the 690 GB DeepSeek-V3.2 is planned on any machine.
#include <algorithm>
#include <memory>

#include "cli/commands.h"
#include "dist/local_group.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/make_model.h"
#include "model/weight_bytes.h"
#include "runtime/kv_dtype.h"
#include "runtime/kv_plan.h"
#include "runtime/replica.h"
#include "util/error.h"

namespace ds::cli {
namespace {

struct PlanFlags {
  std::string model_path, preset, kv_cache_dtype = "auto", speculative_algorithm;
  int64_t num_layers = 0, context_length = 0, max_running_requests = 0;
  int tp = 1, dp = 1, ep = 1, moe_dense_tp_size = 0, page_size = 64;
  bool enable_dp_attention = false;
  double gpu_memory_gib = 139.0, mem_fraction_static = 0.85;
};

double gib(int64_t b) { return double(b) / double(int64_t(1) << 30); }

// Every rank's weights: the loader's cut of each rank, with local groups of the sizes the ranks would have
// (the loader's own grouping, runtime::make_rank_groups).
std::vector<model::WeightBytes> weights_per_rank(const model::ModelConfig& c, const runtime::ParallelConfig& p,
                                                 bool with_mtp) {
  const int n = p.world_size();
  const runtime::RankGroups rg =
      runtime::make_rank_groups(p, 0, n, [](int, int, int, int size) { return dist::make_local_groups(size); });
  std::vector<model::WeightBytes> out;
  for (int r = 0; r < n; ++r)
    out.push_back(model::rank_weight_bytes(c, runtime::rank_layout(p, r, rg.world, rg.local), with_mtp));
  return out;
}

void run(const PlanFlags& f) {
  DS_CHECK(!f.model_path.empty() || !f.preset.empty(),
           "memory-plan: give --model-path DIR (its config.json) or --preset");
  model::ModelConfig c;
  std::string what;
  if (!f.model_path.empty()) {
    c = model::load_config(f.model_path);
    what = f.model_path;
  } else {
    model::MakeModelOptions o;
    o.preset = f.preset;
    o.num_layers = f.num_layers;
    c = model::preset_config(o);
    what = "preset " + f.preset;
  }
  runtime::ParallelConfig p;
  p.tp = f.tp, p.dp = f.dp, p.ep = f.ep, p.dp_attention = f.enable_dp_attention;
  p.moe_dense_local = f.moe_dense_tp_size == 1;
  p.validate();
  const bool mtp = !f.speculative_algorithm.empty();
  DS_CHECK(!mtp || c.num_nextn_predict_layers > 0, "--speculative-algorithm {}: the model has no MTP layer",
           f.speculative_algorithm);
  // serve loads the MTP layer whenever the checkpoint has it (random weights: whenever the config has one).
  const bool with_mtp = c.num_nextn_predict_layers > 0;
  const std::vector<model::WeightBytes> ranks = weights_per_rank(c, p, with_mtp);
  const int n = int(ranks.size());
  auto largest = std::max_element(ranks.begin(), ranks.end(), [](auto& a, auto& b) { return a.total() < b.total(); });
  const model::WeightBytes& w = *largest;
  // The FP8 copy of this rank's LM head rows that drafts read (serve's default on CUDA with speculation).
  const int64_t draft_head = mtp ? c.vocab_size / (p.dp_attention ? p.tp / p.dp : p.tp) * c.hidden_size : 0;
  int64_t total = 0;
  for (auto& r : ranks) total += r.total();

  fmt::print("memory plan: {} ({}, {} layers{}, vocab {}, {} routed experts); {}; {} GPU(s) of {:.1f} GiB free\n", what,
             c.model_type, c.num_hidden_layers, with_mtp ? " + MTP" : "", c.vocab_size, c.n_routed_experts,
             p.describe(), n, f.gpu_memory_gib);
  fmt::print("weights of all ranks: {:.1f} GiB ({:.1f} GB); per rank, the largest (rank {}), GiB:\n", gib(total),
             double(total) / 1e9, int(largest - ranks.begin()));
  fmt::print("  {:>10} {:>10} {:>10} {:>10} {:>8} {:>10} {:>8} {:>8} {:>11} {:>8}\n", "attention", "dense MLP",
             "experts", "shared", "router", "embed+head", "norms", "MTP", "draft head", "total");
  fmt::print("  {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>8.3f} {:>10.2f} {:>8.3f} {:>8.2f} {:>11.2f} {:>8.2f}\n",
             gib(w.attention), gib(w.dense_mlp), gib(w.routed_experts), gib(w.shared_experts), gib(w.router),
             gib(w.embed_head), gib(w.norms), gib(w.mtp), gib(draft_head), gib(w.total() + draft_head));

  // KV: the CUDA backend's cache (auto = BF16 latent; the indexer's keys fp32, or both packed FP8).
  const DType latent = runtime::kv_cache_dtype_named(f.kv_cache_dtype, DType::BF16);
  runtime::KvPlanInput kin;
  kin.bytes_per_token = model::KVCache::bytes_per_token(c, latent, DType::F32, mtp);
  kin.mem_fraction = f.mem_fraction_static;
  kin.available_bytes = int64_t(f.gpu_memory_gib * double(int64_t(1) << 30));
  kin.reserved_bytes = w.total() + draft_head;
  kin.memory_name = "free GPU memory";
  const int dp_groups = n / p.group_size();
  const int64_t running = f.max_running_requests > 0 ? f.max_running_requests : mtp ? 48 : 256;
  kin.max_running_requests = p.dp_attention ? std::max<int64_t>(1, running / dp_groups) : running;
  kin.context_length = f.context_length > 0 ? f.context_length : c.max_position_embeddings;
  kin.page_size = f.page_size;
  fmt::print("KV cache: {} bytes per token ({} layers{}, {} latent{})\n", kin.bytes_per_token, c.num_hidden_layers,
             mtp ? " + MTP" : "", runtime::kv_cache_dtype_label(latent),
             latent == DType::F8_E4M3 ? ", fp8 indexer keys" : ", fp32 indexer keys");
  runtime::KvPlan plan;
  try {  // serve's own plan, and its own words where the weights leave no pool
    plan = runtime::plan_kv_pool(kin);
  } catch (const Error& e) {
    fmt::print("DOES NOT FIT: {}\n", e.what());
    fail("memory-plan: the largest rank's weights ({:.1f} GiB) leave no KV pool", gib(kin.reserved_bytes));
  }
  fmt::print("KV pool per {}: {} tokens, {:.1f} GiB ({})\n", p.dp_attention ? "DP group" : "replica", plan.tokens,
             gib(plan.bytes), plan.why);
  const int64_t ctx = kin.context_length;
  const int64_t at_once = std::min(plan.tokens / ctx, kin.max_running_requests);
  fmt::print("room: {:.1f} GiB per rank outside --mem-fraction-static {} (activations, CUDA graphs, NCCL); "
             "{} sequences of {} tokens per {} at once ({} in all)\n",
             f.gpu_memory_gib * (1 - f.mem_fraction_static), f.mem_fraction_static, at_once, ctx,
             p.dp_attention ? "DP group" : "replica", at_once * (p.dp_attention ? dp_groups : 1));
}

}  // namespace

void register_memory_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand("memory-plan", "each GPU's weights and KV pool for a deployment, without loading it");
  auto f = std::make_shared<PlanFlags>();
  cmd->add_option("--model-path,--model", f->model_path, "checkpoint or config-only directory (its config.json)");
  cmd->add_option("--preset", f->preset, "instead of --model-path: a make-model preset")
      ->check(CLI::IsMember({"tiny", "demo", "full-width"}));
  cmd->add_option("--num-layers", f->num_layers, "with --preset: decoder layers (full-width: 61 = DeepSeek-V3.2)");
  cmd->add_option("--tp,--tp-size", f->tp, "as serve")->capture_default_str();
  cmd->add_option("--dp,--dp-size", f->dp, "as serve")->capture_default_str();
  cmd->add_option("--ep,--ep-size", f->ep, "as serve")->capture_default_str();
  cmd->add_flag("--enable-dp-attention", f->enable_dp_attention, "as serve");
  cmd->add_option("--moe-dense-tp-size", f->moe_dense_tp_size, "as serve");
  cmd->add_option("--gpu-memory-gib", f->gpu_memory_gib, "free memory of each GPU before loading")
      ->capture_default_str();
  cmd->add_option("--mem-fraction-static", f->mem_fraction_static, "as serve on CUDA")->capture_default_str();
  cmd->add_option("--kv-cache-dtype", f->kv_cache_dtype, "auto (bf16), bf16 or fp8_e4m3")->capture_default_str();
  cmd->add_option("--context-length", f->context_length, "default: the model's max_position_embeddings");
  cmd->add_option("--max-running-requests", f->max_running_requests, "default 256 (48 with speculative decoding)");
  cmd->add_option("--speculative-algorithm", f->speculative_algorithm,
                  "EAGLE / NEXTN: the MTP layer's KV and the FP8 draft head counted");
  cmd->add_option("--page-size", f->page_size, "as serve")->capture_default_str();
  cmd->callback([f] { run(*f); });
}

}  // namespace ds::cli
