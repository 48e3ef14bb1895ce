// `dsserve bench model`: its flags (the measurements are perf/model_bench_run.h, perf/model_bench_tp.h).
#include "cli/commands.h"
#include "cli/make_backend.h"
#include "cli/serve_replica.h"
#include "perf/model_bench_run.h"
#include "perf/model_bench_tp.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::cli {

void register_bench_model(CLI::App* bench) {
  auto* cmd = bench->add_subcommand(
      "model", "model forward alone: decode step latency vs HBM roofline, prefill throughput vs FP8 peak");
  auto f = std::make_shared<perf::ModelBenchOptions>();
  auto disable_custom_ar = std::make_shared<bool>(false);
  auto* mp = cmd->add_option("--model-path,--model", f->model_path, "checkpoint directory");
  cmd->add_option("--preset", f->preset, "random weights of this make-model preset, generated in device memory")
      ->check(CLI::IsMember({"tiny", "demo", "full-width"}))
      ->excludes(mp);
  cmd->add_option("--num-layers", f->num_layers, "with --preset: decoder layers (default: the preset's)");
  cmd->add_option("--seed", f->seed, "random seed (weights, KV rows, tokens)");
  cmd->add_option("--device", f->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores; shared by the ranks of --tp)");
  cmd->add_option("--tp,--tp-size", f->tp, "tensor-parallel ranks: GPUs 0..N-1 (or N CPU ranks); per-rank times")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--ep,--ep-size", f->ep, "1, or --tp: whole experts per rank")->check(CLI::Range(1, 64));
  cmd->add_flag("--disable-custom-all-reduce", *disable_custom_ar,
                "cuda --tp: every all-reduce through NCCL, whatever DSSERVE_CUSTOM_AR_MAX_BYTES says (the custom all-reduce is off by default)");
  cmd->add_option("--dp,--dp-size", f->dp,
                  "DP attention groups inside the --tp ranks (serve's --dp N --enable-dp-attention); each decodes --batch")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--batch", f->batches, "comma-separated decode batch sizes ('' for none)");
  cmd->add_option("--context", f->context, "cached tokens per decoding sequence")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--steps", f->steps, "measured decode steps")->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", f->warmup, "decode steps before measuring")->check(CLI::Range(0, 1000));
  cmd->add_option("--prefill", f->prefill, "comma-separated prompt lengths to prefill ('' for none)");
  cmd->add_option("--chunk", f->chunk, "prefill chunk size (the server's --chunked-prefill-size)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--page-size", f->page_size, "KV page size")->check(CLI::Range(1, 4096));
  cmd->add_option("--kv-cache-dtype", f->kv_dtype, "KV cache: auto (BF16 where the backend has it), bf16, fp32, fp8_e4m3")
      ->check(CLI::IsMember({"auto", "bf16", "fp32", "fp8_e4m3"}));
  cmd->add_option("--indexer", f->indexer,
                  "indexer numerics: fp8 (DeepSeek's kernels), fp32 (transformers), auto (as serve: fp8 on cuda)")
      ->check(CLI::IsMember({"auto", "fp32", "fp8"}));
  cmd->add_option("--extrapolate-to", f->extrapolate_to,
                  "also time the model cut to its dense layers + 1 MoE layer, and extrapolate to this many layers");
  cmd->add_option("--hbm-gbs", f->hbm_gbs, "HBM ceiling in GB/s (0: measure it; on CUDA the best of a copy and a read-only kernel)");
  cmd->add_option("--copy-mib", f->copy_mib, "size of the ceiling's buffer (default 4096 on CUDA: copy + read-only kernel; 16 on the CPU: a copy)");
  cmd->add_option("--peak-tflops", f->peak_tflops,
                  "compute ceiling for prefill's % (0: on CUDA cuBLASLt's block-scaled FP8 GEMM measured now, else the "
                  "nominal H100/H200 FP8 dense 1979)");
  cmd->add_option("--cuda-graph-max-bs", f->cuda_graph_max_bs,
                  "cuda: decode steps up to this batch replay CUDA graphs (0: never; profiles run op by op)")
      ->check(CLI::Range(0, 4096));
  cmd->add_flag("--profile", f->profile, "per-op breakdown of one decode step per batch and of one prefill chunk");
  cmd->add_option("--speculative-num-steps", f->spec_steps,
                  "comma-separated draft counts: also time speculative decoding's verify and draft steps with that many "
                  "MTP drafts (the model's MTP layer; presets make one)");
  cmd->add_option("--speculative-draft-head", f->draft_head,
                  "the LM head the drafts read: shared, fp8 (an FP8 copy) or auto (fp8 on cuda), as dsserve serve")
      ->check(CLI::IsMember({"auto", "shared", "fp8"}))
      ->capture_default_str();
  cmd->add_option("--csv", f->csv, "also write every row to this CSV file");
  cmd->add_option("--log-level", f->log_level, "trace|debug|info|warning|error");
  cmd->callback([f, disable_custom_ar] {
    init_logging(f->log_level);
    DS_CHECK(f->ep == 1 || f->ep == f->tp, "--ep must be 1 or equal to --tp (got ep {}, tp {})", f->ep, f->tp);
    DS_CHECK(f->dp >= 1 && f->tp % f->dp == 0, "--dp {} must divide --tp {} (DP attention groups inside the ranks)",
             f->dp, f->tp);
    if (f->tp == 1) return perf::run_model_bench(*f, make_backend(f->device, 0, f->threads));
    const ReplicaFlags rf{f->device, f->threads, 0, 1, {}};
    const bool custom_ar = !*disable_custom_ar;
    std::vector<std::unique_ptr<backend::Backend>> bes;
    std::vector<backend::Backend*> raw;
    for (int r = 0; r < f->tp; ++r) {
      bes.push_back(make_rank_backend(rf, r, f->tp));
      raw.push_back(bes.back().get());
    }
    auto groups = make_rank_groups(f->device, raw, custom_ar);
    std::vector<std::unique_ptr<dist::Group>> attn;  // each DP group's ranks (DP attention), when more than one
    const int per = f->tp / f->dp;
    if (f->dp > 1 && per > 1)
      for (int g = 0; g < f->dp; ++g)
        for (auto& h : make_rank_groups(f->device, std::vector<backend::Backend*>(raw.begin() + g * per,
                                                                                  raw.begin() + (g + 1) * per),
                                                   custom_ar))
          attn.push_back(std::move(h));
    perf::run_model_bench_tp(*f, std::move(bes), std::move(groups), std::move(attn));
  });
}

}  // namespace ds::cli
