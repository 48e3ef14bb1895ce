#include "perf/model_bench_tp.h"

#include <fmt/format.h>

#include <algorithm>
#include <future>

#include "model/checkpoint.h"
#include "model/random_weights.h"
#include "perf/metered_backend.h"
#include "perf/model_bench.h"
#include "runtime/kv_dtype.h"
#include "util/error.h"
#include "util/timer.h"

namespace ds::perf {

namespace {

// fn(rank) on every rank at once (their collectives meet); a rank that throws aborts the group first.
template <typename F>
auto on_ranks(std::vector<std::unique_ptr<dist::Group>>& groups, F fn) {
  using R = decltype(fn(0));
  std::vector<std::future<R>> f;
  for (int r = 0; r < int(groups.size()); ++r)
    f.push_back(std::async(std::launch::async, [&, r] {
      try {
        return fn(r);
      } catch (const std::exception& e) {
        groups[size_t(r)]->abort(fmt::format("rank {}: {}", r, e.what()));
        throw;
      }
    }));
  std::vector<R> out;
  std::exception_ptr err;
  for (auto& x : f) try {
      out.push_back(x.get());
    } catch (...) {
      if (!err) err = std::current_exception();
    }
  if (err) std::rethrow_exception(err);
  return out;
}


}  // namespace

void run_model_bench_tp(const ModelBenchOptions& f, std::vector<std::unique_ptr<backend::Backend>> backends,
                        std::vector<std::unique_ptr<dist::Group>> groups,
                        std::vector<std::unique_ptr<dist::Group>> attn_groups) {
  const int n = int(backends.size());
  DS_CHECK(n >= 2 && int(groups.size()) == n, "bench model --tp: {} backends and {} groups", n, groups.size());
  DS_CHECK(f.dp >= 1 && n % f.dp == 0, "bench model: --dp {} must divide --tp {}", f.dp, n);
  DS_CHECK(f.dp == 1 || f.prefill.empty(), "bench model --dp: decode only (pass --prefill '')");
  DS_CHECK(f.dp == 1 || n / f.dp == 1 || int(attn_groups.size()) == n, "bench model --dp: {} attention group handles for {} ranks",
           attn_groups.size(), n);
  DS_CHECK(f.model_path.empty() != f.preset.empty(), "give one of --model-path and --preset");
  DS_CHECK(f.extrapolate_to == 0 && !f.profile, "bench model --tp: --extrapolate-to and --profile run with --tp 1 only");
  std::vector<std::unique_ptr<MeteredBackend>> be;
  for (auto& b : backends) be.push_back(std::make_unique<MeteredBackend>(std::move(b)));

  // ---- the model, cut: each rank loads (or generates) its own part
  Timer load_timer;
  model::ModelConfig cfg;
  if (!f.model_path.empty()) {
    cfg = model::load_config(f.model_path);
  } else {
    cfg = bench_preset_config(f);
  }
  std::vector<std::unique_ptr<model::Model>> models;
  models.resize(size_t(n));
  on_ranks(groups, [&](int r) {
    MeteredBackend& b = *be[size_t(r)];
    b.make_current();
    model::TensorParallel tp{r, n, f.ep > 1, groups[size_t(r)].get()};
    if (f.dp > 1) {
      tp.dp = f.dp;
      tp.attn_group = n / f.dp > 1 ? attn_groups[size_t(r)].get() : nullptr;
    }
    model::ModelWeights w;
    if (!f.model_path.empty()) {
      auto ckpt = model::Checkpoint::open(f.model_path);
      w = model::load_weights(cfg, ckpt, b, tp);
    } else {
      w = model::random_weights(cfg, b, f.seed, tp);
    }
    models[size_t(r)] = std::make_unique<model::Model>(cfg, std::move(w), b, bench_model_options(f), tp);
    return 0;
  });
  fmt::print("model: {}; {} layers over {} ranks ({}{}); weights per rank {:.2f} GB ({} backend), loaded in {:.1f} s\n",
             f.model_path.empty() ? "preset " + f.preset + ", random weights" : f.model_path, cfg.num_hidden_layers, n,
             f.ep > 1 ? "tensor + expert parallel" : "tensor parallel",
             f.dp > 1 ? fmt::format(", DP attention x {}: every group decodes --batch sequences", f.dp) : "",
             be[0]->loaded_weight_bytes() / 1e9, be[0]->name(), load_timer.seconds());

  // ---- the ceiling each rank's bytes are held against (rank 0's device; all ranks are the same kind)
  double bw = f.hbm_gbs * 1e9;
  if (bw <= 0) {
    const int64_t bytes = f.copy_mib > 0 ? f.copy_mib << 20 : be[0]->device() == Device::CUDA ? int64_t(4) << 30 : 16 << 20;
    bw = measure_copy_bandwidth(*be[0], bytes);
    fmt::print("HBM ceiling: {:.0f} GB/s, a device-to-device copy of {} MiB on rank 0 (bytes read + written)\n",
               bw / 1e9, bytes >> 20);
  }
  const DType kv_dtype = runtime::resolve_kv_cache_dtype(f.kv_dtype, *be[0]);
  DecodeSetup ds;
  ds.warmup = f.warmup;
  ds.steps = f.steps;
  ds.page_size = f.page_size;
  ds.seed = f.seed + 1;
  ds.cuda_graph_max_bs = f.cuda_graph_max_bs;
  ds.dp = f.dp;
  const bool host_timed = groups[0]->name() == "local";

  int failures = 0;
  const auto batches = parse_sizes(f.batches, "--batch");
  if (!batches.empty())
    fmt::print("\nDecode: context {} tokens per sequence, median of {} steps after {} warm-up; per rank: step ms, "
               "bytes read (GB) and x roofline{}\n",
               f.context, f.steps, f.warmup,
               host_timed ? ", collectives ms per step" : " (NCCL collectives are asynchronous: not timed apart)");
  for (int64_t b : batches) try {
      for (auto& g : groups) g->reset_stats();
      auto res = on_ranks(groups, [&](int r) {
        MeteredBackend& mb = *be[size_t(r)];
        mb.make_current();
        DecodeCache cache = make_decode_cache(*models[size_t(r)], mb, int(b), f.context, f.warmup + f.steps + 2,
                                              f.page_size, kv_dtype, f.seed + 2);
        return run_decode(*models[size_t(r)], mb, cache, int(b), f.context, ds);
      });
      double slowest = 0;
      std::string per_rank;
      for (int r = 0; r < n; ++r) {
        const DecodeResult& d = res[size_t(r)];
        const double read = d.weight_bytes + d.kv_bytes, roof = read / bw * 1e3;
        slowest = std::max(slowest, d.step_ms);
        const int total_steps = f.warmup + f.steps + 1;
        per_rank += fmt::format("\n  rank {}: {:.3f} ms, {:.3f} GB, {:.2f}x{}", r, d.step_ms, read / 1e9, d.step_ms / roof,
                                host_timed ? fmt::format(", collectives {:.3f} ms",
                                                         groups[size_t(r)]->seconds_in_collectives() * 1e3 / total_steps)
                                           : "");
      }
      const double tokens = double(b) * f.dp;  // every DP group decodes b sequences
      fmt::print("batch {:>4}{}: step {:.3f} ms (slowest rank), {:.1f} tok/s{}\n", b,
                 f.dp > 1 ? fmt::format(" per DP group ({} in all)", b * f.dp) : "", slowest, 1e3 * tokens / slowest,
                 per_rank);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      fmt::print("decode batch {}: FAILED: {}\n", b, e.what());
      ++failures;
      if (groups[0]->aborted()) break;  // the group is gone: nothing else can run
    }

  const auto prefills = parse_sizes(f.prefill, "--prefill");
  if (!prefills.empty() && !groups[0]->aborted())
    fmt::print("\nPrefill: one sequence, chunks of {} tokens (per rank seconds; the replica's is the slowest)\n", f.chunk);
  for (int64_t p : prefills) {
    if (groups[0]->aborted()) break;
    try {
      auto res = on_ranks(groups, [&](int r) {
        be[size_t(r)]->make_current();
        return run_prefill(*models[size_t(r)], *be[size_t(r)], p, f.chunk, f.page_size, kv_dtype, f.seed + 4, false, 0);
      });
      double slowest = 0;
      for (const auto& x : res) slowest = std::max(slowest, x.seconds);
      fmt::print("{:>7} tokens: {:.3f} s, {:.0f} tok/s\n", p, slowest, double(p) / slowest);
    } catch (const std::exception& e) {
      fmt::print("prefill {} tokens: FAILED: {}\n", p, e.what());
      ++failures;
    }
  }
  DS_CHECK(failures == 0, "{} configuration(s) failed (reported above)", failures);
}

}  // namespace ds::perf
