// `dsserve bench model`: the model forward alone (no scheduler, no HTTP) on the CPU or CUDA backend.
// Decode step latency at several batch sizes over long contexts, next to the HBM roofline of the bytes
// the step must read; prefill throughput next to the FP8 tensor-core peak. Weights come from a
// checkpoint, or are generated straight into device memory (--preset), so full-width layers need no
// disk; with --extrapolate-to, a second model cut to the dense layers + one MoE layer gives the cost
// per MoE layer, and the figures are extrapolated to a deeper model (labelled as such).
#include "perf/model_bench_run.h"

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "backend/backend.h"
#include "backend/cuda/compute_ceiling.h"  // the nominal peaks (declarations only: no CUDA needed)
#ifdef DSSERVE_HAVE_CUDA
#include "backend/cuda/hbm_ceiling.h"
#endif
#include "model/checkpoint.h"
#include "model/make_model.h"
#include "model/random_weights.h"
#include "perf/metered_backend.h"
#include "runtime/kv_dtype.h"
#include "perf/model_bench.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace ds::perf {

namespace {


// Cost per MoE layer from two models that differ only in MoE layers, carried to `target` layers.
double extrapolate(double cut, double full, int64_t cut_layers, int64_t full_layers, int64_t target) {
  return cut + (full - cut) * double(target - cut_layers) / double(full_layers - cut_layers);
}

std::string layer_mix(const model::ModelConfig& c) {
  int64_t moe = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe += c.is_moe_layer(l);
  return fmt::format("{} layers ({} dense + {} MoE)", c.num_hidden_layers, c.num_hidden_layers - moe, moe);
}

class Csv {
 public:
  explicit Csv(const std::string& path) {
    if (path.empty()) return;
    f_.open(path);
    DS_CHECK(f_.good(), "cannot write {}", path);
    f_ << "kind,layers,batch,context,ms,enqueue_ms,moe_host_ms,tok_s,read_gb,experts,roofline_ms,ratio,tflop,"
          "tflop_s,pct_peak,launch_ms\n";
  }
  void row(const std::string& kind, int64_t layers, int64_t batch, int64_t context, double ms, double enqueue_ms,
           double moe_ms, double tok_s, double read_gb, double experts, double roofline_ms, double ratio, double tflop,
           double tflops, double pct, double launch_ms = 0) {
    if (!f_.is_open()) return;
    f_ << fmt::format("{},{},{},{},{:.4f},{:.4f},{:.4f},{:.2f},{:.6f},{:.2f},{:.4f},{:.3f},{:.6f},{:.4f},{:.3f},{:.4f}\n",
                      kind, layers, batch, context, ms, enqueue_ms, moe_ms, tok_s, read_gb, experts, roofline_ms,
                      ratio, tflop, tflops, pct, launch_ms);
    f_.flush();
  }

 private:
  std::ofstream f_;
};

void print_profile(const std::string& label, const std::vector<OpProfile>& rows, double step_ms, double sync_s) {
  double sum = 0;
  for (const auto& r : rows) sum += r.ms;
  fmt::print("\nProfile: {} (a device sync after every op; its own {:.1f} us taken off each; ops sum to {:.3f} ms, "
             "the unprofiled step took {:.3f} ms)\n",
             label, sync_s * 1e6, sum, step_ms);
  fmt::print("  {:<40} {:>7} {:>10} {:>7}\n", "op", "calls", "ms", "share");
  for (size_t i = 0; i < rows.size() && i < 16; ++i)
    fmt::print("  {:<40} {:>7} {:>10.3f} {:>6.1f}%\n", rows[i].op, rows[i].calls, rows[i].ms,
               sum > 0 ? 100 * rows[i].ms / sum : 0.0);
}

}  // namespace

std::vector<int64_t> parse_sizes(const std::string& s, const char* flag) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    int64_t x = 0;
    try {
      x = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    DS_CHECK(used == item.size() && x >= 1, "{}: '{}' is not a positive number", flag, item);
    v.push_back(x);
  }
  return v;
}

model::ModelConfig bench_preset_config(const ModelBenchOptions& f) {
  model::MakeModelOptions o;
  o.preset = f.preset;
  o.num_layers = f.num_layers;
  o.seed = f.seed;
  o.overrides = {{"num_nextn_predict_layers", f.spec_steps.empty() ? 0 : 1}};
  return model::preset_config(o);
}

model::ModelOptions bench_model_options(const ModelBenchOptions& f) {
  model::ModelOptions o;
  o.indexer = model::indexer_mode_for(f.indexer, f.device);
  if (!f.spec_steps.empty()) o.draft_head = model::draft_head_named(f.draft_head, f.device);
  return o;
}

void run_model_bench(const ModelBenchOptions& f, std::unique_ptr<backend::Backend> backend) {
  DS_CHECK(f.model_path.empty() != f.preset.empty(), "give one of --model-path and --preset");
  const auto batches = parse_sizes(f.batches, "--batch"), prefills = parse_sizes(f.prefill, "--prefill");
  MeteredBackend be(std::move(backend));

  // ---- the model: a checkpoint, or random weights generated into the backend's memory
  Timer load_timer;
  model::ModelConfig cfg;
  model::ModelWeights w;
  std::string source;
  if (!f.model_path.empty()) {
    cfg = model::load_config(f.model_path);
    auto ckpt = model::Checkpoint::open(f.model_path);
    w = model::load_weights(cfg, ckpt, be);
    source = f.model_path;
  } else {
    cfg = bench_preset_config(f);
    w = model::random_weights(cfg, be, f.seed, {}, !f.spec_steps.empty());
    source = fmt::format("preset {}, random weights generated on the {} (seed {})", f.preset, be.name(), f.seed);
  }
  fmt::print("model: {}; {}; {:.2f} GB of weights on the {} backend, made in {:.1f} s\n", source, layer_mix(cfg),
             be.loaded_weight_bytes() / 1e9, be.name(), load_timer.seconds());
  if (int64_t free = be.free_device_memory()) fmt::print("device memory free after the weights: {:.1f} GiB\n", double(free) / (1 << 30));

  // ---- ceilings
  double bw = f.hbm_gbs * 1e9;
  if (bw <= 0) {
    const int64_t bytes = f.copy_mib > 0 ? f.copy_mib << 20 : be.device() == Device::CUDA ? int64_t(4) << 30 : 16 << 20;
#ifdef DSSERVE_HAVE_CUDA
    if (be.device() == Device::CUDA) {  // the ceiling gpu_bench uses too (backend/cuda/hbm_ceiling.h)
      const backend::cuda::HbmCeiling h = backend::cuda::measure_hbm_ceiling(bytes);
      bw = h.best_gbs() * 1e9;
      fmt::print("{}, measured now\n", h.describe());
    }
#endif
    if (bw <= 0) {
      bw = measure_copy_bandwidth(be, bytes);
      fmt::print("HBM ceiling: {:.0f} GB/s, a device-to-device copy of {} MiB measured now (bytes read + written)\n",
                 bw / 1e9, bytes >> 20);
    }
  } else {
    fmt::print("HBM ceiling: {:.0f} GB/s (given)\n", bw / 1e9);
  }
  const double sync_s = measure_sync_cost(be);
  // The latent cache's element type, as `serve --kv-cache-dtype` picks it (auto: BF16 where supported).
  const DType kv_dtype = runtime::resolve_kv_cache_dtype(f.kv_dtype, be);
  {  // capacity: what a server's pool would hold in the memory left after the weights
    const int64_t per_token = model::KVCache::bytes_per_token(cfg, kv_dtype, be.act_dtype(), false);
    const int64_t free_b = be.free_device_memory();
    fmt::print("KV cache {}: {} bytes per token over {} layers{}\n", runtime::kv_cache_dtype_label(kv_dtype),
               per_token, cfg.num_hidden_layers,
               free_b > 0 ? fmt::format("; {} tokens fit the {:.1f} GiB free now", free_b / per_token,
                                        double(free_b) / double(1 << 30))
                          : std::string());
  }
  // Prefill's "% peak": of the FP8 GEMM rate measured now (cuBLASLt, block-scaled, 8192^3) on CUDA. Until
  // session 22 this was 989 TFLOP/s, labelled the FP8 dense peak: that is the BF16 one (FP8: 1,979), and
  // neither is reachable by a block-scaled GEMM, so the measured rate is the ceiling.
  double peak = f.peak_tflops;
  std::string peak_what = "given (--peak-tflops)";
#ifdef DSSERVE_HAVE_CUDA
  if (peak <= 0 && be.device() == Device::CUDA) {
    try {  // ~0.6 GB for a moment, after the weights: a full device falls back to the nominal figure
      const backend::cuda::ComputeCeiling cc = backend::cuda::measure_compute_ceiling();
      fmt::print("{}\n", cc.describe());
      if (cc.fp8_tflops > 0) peak = cc.fp8_tflops, peak_what = "cuBLASLt FP8 block-scaled, measured now";
    } catch (const std::exception& e) {
      fmt::print("tensor-core ceiling not measured: {}\n", e.what());
    }
  }
#endif
  if (peak <= 0) peak = backend::cuda::kNominalFp8Tflops, peak_what = "the nominal FP8 dense peak of an H100/H200 SXM";
  fmt::print("compute ceiling for prefill's % peak: {:.0f} TFLOP/s ({}; nominal FP8 dense {:.0f}, BF16 {:.0f})\n", peak,
             peak_what, backend::cuda::kNominalFp8Tflops, backend::cuda::kNominalBf16Tflops);

  // ---- the models: full, and cut to the dense layers + 1 MoE layer when extrapolating
  std::vector<std::unique_ptr<model::Model>> models;
  const model::ModelOptions mopts = bench_model_options(f);
  if (f.extrapolate_to > 0) {
    const int64_t cut = cfg.first_k_dense_replace + 1;
    DS_CHECK(cfg.num_hidden_layers > cut && f.extrapolate_to >= cfg.num_hidden_layers,
             "--extrapolate-to needs more than {} layers (the dense ones + 1 MoE) and a target >= {}", cut,
             cfg.num_hidden_layers);
    model::ModelConfig cc = cfg;
    cc.num_hidden_layers = cut;
    model::ModelWeights cw = w;  // shares the device storage
    cw.layers.resize(size_t(cut));
    cw.mtp.clear();
    models.push_back(std::make_unique<model::Model>(cfg, std::move(w), be, mopts));
    models.push_back(std::make_unique<model::Model>(cc, std::move(cw), be, mopts));
  } else {
    models.push_back(std::make_unique<model::Model>(cfg, std::move(w), be, mopts));
  }
  const model::Model& full = *models[0];
  Csv csv(f.csv);

  // ---- decode
  std::vector<DecodeResult> decode;
  if (!batches.empty()) {
    fmt::print("\nDecode: context {} tokens per sequence (random cached rows, {} latent cache), median of {} steps "
               "after {} warm-up\n",
               f.context, runtime::kv_cache_dtype_label(kv_dtype), f.steps, f.warmup);
    fmt::print("Each step ends as a server's: {}\n", be.can_sample()
                                                        ? "greedy tokens drawn on the device (only the ids come back)"
                                                        : "the logits read back");
    fmt::print("Host: 'enqueue' = forward start to that readback; of that, 'launch' in ops that only launch "
               "and 'MoE' inside moe_experts (launches + its routing readback)\n");
    if (f.cuda_graph_max_bs > 0 && be.can_capture())
      fmt::print("CUDA graphs: steps of up to {} sequences replay a recording made in the warm-up (their 'ops' are "
                 "the replay and the sampling; --cuda-graph-max-bs 0 for op by op)\n", f.cuda_graph_max_bs);
    fmt::print("{:>6} {:>5} {:>9} {:>15} {:>8} {:>8} {:>8} {:>6} {:>9} {:>8} {:>7} {:>8} {:>9} {:>7}\n", "layers",
               "batch", "step ms", "(min - max)", "enqueue", "launch", "MoE", "ops", "tok/s", "weights", "KV GB",
               "experts", "roofline", "x roof");
  }
  DecodeSetup ds;
  ds.warmup = f.warmup;
  ds.steps = f.steps;
  ds.page_size = f.page_size;
  ds.seed = f.seed + 1;
  ds.sync_s = sync_s;
  ds.cuda_graph_max_bs = f.cuda_graph_max_bs;
  // A configuration that fails (device memory, say) is reported and skipped: the others still run.
  int failures = 0;
  auto report_failure = [&](const std::string& what, const std::exception& e) {
    fmt::print("{}: FAILED: {}\n", what, e.what());
    std::fflush(stdout);
    ++failures;
  };
  for (int64_t b : batches) try {
    DecodeCache cache =
        make_decode_cache(full, be, int(b), f.context, f.warmup + f.steps + 2, f.page_size, kv_dtype, f.seed + 2);
    for (size_t mi = 0; mi < models.size(); ++mi) {
      ds.profile = f.profile && mi == 0;
      DecodeResult r = run_decode(*models[mi], be, cache, int(b), f.context, ds);
      const double read = r.weight_bytes + r.kv_bytes, roof_ms = read / bw * 1e3;
      fmt::print("{:>6} {:>5} {:>9.3f} {:>15} {:>8.3f} {:>8.3f} {:>8.3f} {:>6} {:>9.1f} {:>8.3f} {:>7.3f} {:>8.1f} {:>9.3f} "
                 "{:>7.2f}\n",
                 r.layers, r.batch, r.step_ms, fmt::format("({:.2f} - {:.2f})", r.min_ms, r.max_ms), r.enqueue_ms,
                 r.launch_ms, r.moe_host_ms, r.ops, 1e3 * double(b) / r.step_ms, r.weight_bytes / 1e9, r.kv_bytes / 1e9,
                 r.experts_per_moe_layer, roof_ms, r.step_ms / roof_ms);
      csv.row("decode", r.layers, b, f.context, r.step_ms, r.enqueue_ms, r.moe_host_ms, 1e3 * double(b) / r.step_ms,
              read / 1e9, r.experts_per_moe_layer, roof_ms, r.step_ms / roof_ms, 0, 0, 0, r.launch_ms);
      decode.push_back(std::move(r));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    report_failure(fmt::format("decode batch {}", b), e);
    if (decode.size() % models.size()) decode.pop_back();  // keep full/cut pairs
  }

  // ---- speculative decoding's steps (the full model)
  const auto spec_steps = f.spec_steps.empty() ? std::vector<int64_t>{} : parse_sizes(f.spec_steps, "--speculative-num-steps");
  if (!spec_steps.empty() && !batches.empty()) {
    fmt::print("\nSpeculative decoding with S MTP drafts per step: the verify step (last token + S drafts, logits of "
               "all, greedy draw per row) and the draft step (the MTP KV of S + 1 positions + S one-token MTP passes), median "
               "of {} steps\n", f.steps);
    fmt::print("TPOT at accept length a = (verify + draft) / a; a = 1: every draft rejected, a = S + 1: all accepted\n");
    fmt::print("{:>6} {:>2} {:>5} {:>10} {:>10} {:>9} {:>10} {:>12} {:>12} {:>12}\n", "layers", "S", "batch",
               "decode ms", "verify ms", "draft ms", "a=1 x dec", "TPOT a=2.5", "TPOT a=S+1", "x dec (all)");
  }
  for (int64_t S : spec_steps)
    for (int64_t b : batches) try {
      const int q = int(S) + 1;
      DecodeCache cache = make_decode_cache(full, be, int(b), f.context, (f.warmup + f.steps + 2) * q + q, f.page_size,
                                            kv_dtype, f.seed + 2);
      SpecResult r = run_spec(full, be, cache, int(b), f.context, int(S), ds);
      double dec = 0;
      for (const auto& d : decode)
        if (d.batch == b && d.layers == full.config().num_hidden_layers) dec = d.step_ms;
      const double both = r.verify_ms + r.draft_ms;
      fmt::print("{:>6} {:>2} {:>5} {:>10.3f} {:>10.3f} {:>9.3f} {:>10.2f} {:>12.3f} {:>12.3f} {:>12.2f}\n",
                 full.config().num_hidden_layers, S, b, dec, r.verify_ms, r.draft_ms, dec > 0 ? both / dec : 0.0,
                 both / 2.5, both / q, dec > 0 ? both / q / dec : 0.0);
      csv.row("spec", full.config().num_hidden_layers, b, f.context, dec, r.verify_ms, r.draft_ms, S, 0, 0, 0,
              0, 0, 0, 0, 0);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      report_failure(fmt::format("speculative steps S {} batch {}", S, b), e);
    }

  // ---- prefill
  std::vector<PrefillResult> prefill;
  if (!prefills.empty()) {
    try {  // warm-up: first use of the large-M GEMM paths
      run_prefill(full, be, std::min<int64_t>(prefills[0], std::min<int64_t>(f.chunk, 1024)), f.chunk, f.page_size,
                  kv_dtype, f.seed + 3, false, sync_s);
    } catch (const std::exception& e) {
      report_failure("prefill warm-up", e);
    }
    fmt::print("\nPrefill: one sequence, chunks of {} tokens, logits of the last token\n", f.chunk);
    fmt::print("{:>6} {:>7} {:>9} {:>10} {:>9} {:>9} {:>8}\n", "layers", "tokens", "seconds", "tok/s", "TFLOP",
               "TFLOP/s", "% peak");
  }
  int64_t profiled_prefill = 0;  // the largest size that is one chunk
  for (int64_t p : prefills)
    if (p <= f.chunk) profiled_prefill = std::max(profiled_prefill, p);
  for (int64_t p : prefills) try {
    for (size_t mi = 0; mi < models.size(); ++mi) {
      PrefillResult r = run_prefill(*models[mi], be, p, f.chunk, f.page_size, kv_dtype, f.seed + 4,
                                    f.profile && mi == 0 && p == profiled_prefill, sync_s);
      const double tflops = r.flops / r.seconds / 1e12;
      fmt::print("{:>6} {:>7} {:>9.3f} {:>10.0f} {:>9.2f} {:>9.1f} {:>7.1f}%\n", r.layers, r.tokens, r.seconds,
                 double(p) / r.seconds, r.flops / 1e12, tflops, 100 * tflops / peak);
      csv.row("prefill", r.layers, 1, p, r.seconds * 1e3, 0, 0, double(p) / r.seconds, 0, 0, 0, 0, r.flops / 1e12,
              tflops, 100 * tflops / peak);
      prefill.push_back(std::move(r));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    report_failure(fmt::format("prefill {} tokens", p), e);
    if (prefill.size() % models.size()) prefill.pop_back();
  }

  // ---- extrapolation to a deeper model: per MoE layer = (full - cut) / (their layer difference)
  if (models.size() == 2) {
    const int64_t lf = models[0]->config().num_hidden_layers, lc = models[1]->config().num_hidden_layers,
                  X = f.extrapolate_to;
    auto ex = [&](double cut, double full_v) { return extrapolate(cut, full_v, lc, lf, X); };
    fmt::print("\nExtrapolated to {} layers (NOT measured: {}-layer and {}-layer runs above, cost per MoE layer = "
               "difference / {})\n",
               X, lf, lc, lf - lc);
    fmt::print("{:>6} {:>5} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7}\n", "layers", "batch", "step ms", "enqueue ms",
               "tok/s", "read GB", "roofline", "x roof");
    for (size_t i = 0; i + 1 < decode.size(); i += 2) {
      const DecodeResult &a = decode[i], &c = decode[i + 1];
      const double step = ex(c.step_ms, a.step_ms), enq = ex(c.enqueue_ms, a.enqueue_ms),
                   read = ex(c.weight_bytes + c.kv_bytes, a.weight_bytes + a.kv_bytes), roof = read / bw * 1e3;
      fmt::print("{:>6} {:>5} {:>9.2f} {:>10.2f} {:>9.1f} {:>9.2f} {:>9.2f} {:>7.2f}\n", X, a.batch, step, enq,
                 1e3 * a.batch / step, read / 1e9, roof, step / roof);
      csv.row("decode-extrapolated", X, a.batch, a.context, step, enq, ex(c.moe_host_ms, a.moe_host_ms),
              1e3 * a.batch / step, read / 1e9, a.experts_per_moe_layer, roof, step / roof, 0, 0, 0,
              ex(c.launch_ms, a.launch_ms));
    }
    for (size_t i = 0; i + 1 < prefill.size(); i += 2) {
      const PrefillResult &a = prefill[i], &c = prefill[i + 1];
      const double s = ex(c.seconds, a.seconds), fl = ex(c.flops, a.flops), tflops = fl / s / 1e12;
      fmt::print("{:>6} prefill {:>7} tokens: {:>9.3f} s {:>9.0f} tok/s {:>9.1f} TFLOP/s {:>6.1f}% of peak\n", X,
                 a.tokens, s, double(a.tokens) / s, tflops, 100 * tflops / peak);
      csv.row("prefill-extrapolated", X, 1, a.tokens, s * 1e3, 0, 0, double(a.tokens) / s, 0, 0, 0, 0, fl / 1e12,
              tflops, 100 * tflops / peak);
    }
  }

  if (f.profile) {
    for (size_t i = 0; i < decode.size(); i += models.size())
      print_profile(fmt::format("decode, batch {}, {} layers", decode[i].batch, decode[i].layers), decode[i].profile,
                    decode[i].step_ms, sync_s);
    for (size_t i = 0; i < prefill.size(); i += models.size())
      if (!prefill[i].profile.empty())
        print_profile(fmt::format("prefill {} tokens, {} layers", prefill[i].tokens, prefill[i].layers),
                      prefill[i].profile, prefill[i].seconds * 1e3, sync_s);
  }
  DS_CHECK(failures == 0, "{} configuration(s) failed (above)", failures);
}

}  // namespace ds::perf
