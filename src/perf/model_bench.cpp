#include "perf/model_bench.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "util/error.h"

namespace ds::perf {

namespace {
using Clock = MeteredBackend::Clock;
double ms_since(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A host tensor of varied values with unit variance (uniform in +-sqrt(3)): random enough for KV rows
// and copies, and fast for a GiB (a xorshift per element).
Tensor random_rows(int64_t rows, int64_t cols, uint64_t seed) {
  Tensor t = Tensor::empty({rows, cols}, DType::F32);
  float* p = t.f32();
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < rows * cols; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = float(double(x >> 11) * 0x1.0p-53 * 2 - 1) * 1.7320508f;
  }
  return t;
}

// A step's draws must all have succeeded: a failed one means NaN or inf logits.
void check_drawn(const runtime::StepOutput& out, const char* what) {
  for (size_t i = 0; i < out.tokens.failed.size(); ++i)
    DS_CHECK(out.tokens.failed[i].empty(), "{}: sequence {}: {} (the forward produced garbage)", what, i,
             out.tokens.failed[i]);
}

// One step with a device sync after every op: where the step's device time goes.
std::vector<OpProfile> profile_step(MeteredBackend& be, const std::function<void()>& step, double sync_s) {
  be.synchronize();
  be.reset();
  be.set_sync_each_op(true);
  step();
  be.set_sync_each_op(false);
  std::vector<OpProfile> rows;
  for (const auto& [op, t] : be.op_times())
    rows.push_back({op, t.calls, std::max(0.0, t.synced_s - double(t.calls) * sync_s) * 1e3});
  std::sort(rows.begin(), rows.end(), [](const OpProfile& a, const OpProfile& b) { return a.ms > b.ms; });
  return rows;
}
}  // namespace

DecodeCache make_decode_cache(const model::Model& m, MeteredBackend& be, int batch, int context, int extra,
                              int32_t page_size, DType latent_dtype, uint64_t seed) {
  DecodeCache c;
  c.pages_per_seq = int32_t((int64_t(context) + extra + page_size - 1) / page_size);
  c.kv = m.make_cache(batch * c.pages_per_seq, page_size, latent_dtype);
  if (context == 0) return c;
  // One block of random rows per pool width, uploaded once and scattered to every sequence's pages in
  // a rotated order (rotation by sequence and layer).
  const int64_t n = std::min(context, 4096);
  // Packed FP8 pools are filled through their quantising write (random fp32 rows of the layout's width).
  auto fill = [&](std::vector<Tensor>& pools, uint64_t salt, const backend::KvFp8Layout* fp8) {
    if (pools.empty()) return;
    Tensor block = be.from_host(random_rows(n, fp8 ? fp8->width() : pools[0].row_size(), seed ^ salt));
    Tensor quant, rest;
    if (fp8) {
      quant = be.alloc({n, fp8->quant_dim}, be.act_dtype());
      be.copy_cols(quant, 0, block, 0, fp8->quant_dim);
      if (fp8->bf16_dim) {
        rest = be.alloc({n, fp8->bf16_dim}, be.act_dtype());
        be.copy_cols(rest, 0, block, fp8->quant_dim, fp8->bf16_dim);
      }
    }
    std::vector<int32_t> slots;
    for (size_t l = 0; l < pools.size(); ++l)
      for (int s = 0; s < batch; ++s)
        for (int64_t c0 = 0; c0 < context; c0 += n) {
          const int64_t len = std::min<int64_t>(n, context - c0);
          const int64_t rot = (7919 * int64_t(s) + 104729 * int64_t(l)) % len;
          slots.resize(size_t(len));
          for (int64_t t = 0; t < len; ++t) {
            const int64_t pos = c0 + (t + rot) % len;
            slots[size_t(t)] = int32_t((int64_t(s) * c.pages_per_seq + pos / page_size) * page_size + pos % page_size);
          }
          if (!fp8) {
            be.cache_write(pools[l], 0, len == n ? block : block.rows(0, len), slots);
          } else {
            Tensor r = rest.defined() ? (len == n ? rest : rest.rows(0, len)) : Tensor();
            be.cache_write_fp8(pools[l], *fp8, len == n ? quant : quant.rows(0, len), r.defined() ? &r : nullptr,
                               slots);
          }
        }
  };
  fill(c.kv.latent, 0x1a7e47, c.kv.fp8() ? &c.kv.latent_layout : nullptr);
  fill(c.kv.index_k, 0x1d3c5, c.kv.fp8() ? &c.kv.index_layout : nullptr);
  return c;
}

DecodeResult run_decode(const model::Model& m, MeteredBackend& be, DecodeCache& cache, int batch, int context,
                        const DecodeSetup& s) {
  const auto& cfg = m.config();
  runtime::RunnerConfig rc;
  rc.num_pages = cache.kv.num_pages;
  rc.page_size = cache.kv.page_size;
  rc.cuda_graph_max_bs = s.cuda_graph_max_bs;
  rc.cuda_graph_lazy = true;  // the first warm-up step of the shape records it
  runtime::ModelRunner runner(rc, m, cache.kv);
  runtime::GreedySampling greedy;
  std::mt19937 rng{uint32_t(s.seed)};
  int step = 0;
  auto make_step = [&] {
    runtime::StepInput in;
    in.mode = runtime::ForwardMode::Decode;
    for (int b = 0; b < batch; ++b) {
      model::SequenceChunk sc;
      sc.tokens = {int32_t(3 + rng() % uint32_t(cfg.vocab_size - 3))};
      sc.start_pos = context + step;
      for (int32_t p = 0; p < cache.pages_per_seq; ++p) sc.page_table.push_back(b * cache.pages_per_seq + p);
      in.batch.seqs.push_back(std::move(sc));
    }
    in.sample = greedy.slots(size_t(batch));
    if (s.dp > 1) {  // every group brings the same batch (the engine would pad them to one bucket anyway)
      in.batch.dp_tokens.assign(size_t(s.dp), batch);
      in.batch.dp_decode_bs = batch;
    }
    DS_CHECK(int64_t(context) + step + 1 <= int64_t(cache.pages_per_seq) * cache.kv.page_size,
             "decode cache too small for step {}", step);
    ++step;
    return in;
  };
  if (s.dp > 1 && s.cuda_graph_max_bs > 0) runner.record_graphs(batch, context + s.warmup + s.steps + 2);
  for (int i = 0; i < s.warmup; ++i) check_drawn(runner.run(make_step()), "decode warm-up");

  DecodeResult r;
  r.layers = cfg.num_hidden_layers;
  r.batch = batch;
  r.context = context;
  {  // the bytes: one step with the routing read back
    auto in = make_step();
    be.reset();
    be.set_count_experts(true);
    auto out = runner.run(std::move(in));
    be.set_count_experts(false);
    check_drawn(out, "decode");
    const auto& t = be.totals();
    r.weight_bytes = t.weight_bytes;
    r.kv_bytes = t.kv_bytes + t.index_key_bytes;
    r.experts_per_moe_layer = t.moe_layers ? double(t.experts_touched) / double(t.moe_layers) : 0.0;
  }
  // Timed steps end as a server's do: greedy tokens drawn next to the logits where the backend can
  // (only the ids come back), else the logits read back and drawn on the host.
  auto timed_step = [&](runtime::StepInput in) { check_drawn(runner.run(std::move(in)), "decode"); };
  std::vector<double> step_ms, enqueue_ms, moe_ms, launch_ms;
  for (int i = 0; i < s.steps; ++i) {
    auto in = make_step();
    be.reset();
    const auto t0 = Clock::now();
    timed_step(std::move(in));
    const auto t1 = Clock::now();
    step_ms.push_back(ms_since(t0, t1));
    enqueue_ms.push_back(ms_since(t0, be.last_readback()));
    double moe = 0, launch = 0;
    for (const auto& [op, t] : be.op_times()) {
      if (op == "moe_experts") moe += t.host_s * 1e3;
      else if (op != "to_host_f32" && op != "sample") launch += t.host_s * 1e3;
    }
    moe_ms.push_back(moe);
    launch_ms.push_back(launch);
    r.ops = be.totals().ops;
  }
  r.step_ms = median(step_ms);
  r.min_ms = *std::min_element(step_ms.begin(), step_ms.end());
  r.max_ms = *std::max_element(step_ms.begin(), step_ms.end());
  r.enqueue_ms = median(enqueue_ms);
  r.moe_host_ms = median(moe_ms);
  r.launch_ms = median(launch_ms);
  if (s.profile) {
    auto in = make_step();
    r.profile = profile_step(be, [&] { timed_step(in); }, s.sync_s);
  }
  return r;
}

SpecResult run_spec(const model::Model& m, MeteredBackend& be, DecodeCache& cache, int batch, int context, int drafts,
                    const DecodeSetup& s) {
  DS_CHECK(m.has_mtp(), "speculative decoding's steps need the model's MTP layer");
  const auto& cfg = m.config();
  runtime::RunnerConfig rc;
  rc.num_pages = cache.kv.num_pages;
  rc.page_size = cache.kv.page_size;
  rc.cuda_graph_max_bs = s.cuda_graph_max_bs;
  rc.cuda_graph_lazy = true;
  rc.draft_steps = drafts;
  runtime::ModelRunner runner(rc, m, cache.kv);
  runtime::GreedySampling greedy;
  std::mt19937 rng{uint32_t(s.seed)};
  const int32_t q = drafts + 1;
  int32_t pos = context;
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(int32_t(3 + rng() % uint32_t(cfg.vocab_size - 3)));
    return t;
  };
  auto pages = [&](int b) {
    std::vector<int32_t> p;
    for (int32_t k = 0; k < cache.pages_per_seq; ++k) p.push_back(b * cache.pages_per_seq + k);
    return p;
  };
  auto verify_step = [&] {
    runtime::StepInput in;
    in.mode = runtime::ForwardMode::TargetVerify;
    in.keep_hidden = in.sample_per_row = true;
    for (int b = 0; b < batch; ++b) {
      model::SequenceChunk sc;
      sc.tokens = random_tokens(q);
      sc.start_pos = pos;
      sc.page_table = pages(b);
      sc.logits = model::LogitsMode::All;
      in.batch.seqs.push_back(std::move(sc));
    }
    in.sample = greedy.slots(size_t(batch) * size_t(q));
    return in;
  };
  auto draft_step = [&] {
    runtime::StepInput in;
    in.mode = runtime::ForwardMode::DraftExtend;
    for (int b = 0; b < batch; ++b) {
      model::SequenceChunk sc;
      sc.tokens = random_tokens(q);  // the next token of each confirmed position
      sc.start_pos = pos;
      sc.page_table = pages(b);
      sc.logits = model::LogitsMode::Last;
      in.batch.seqs.push_back(std::move(sc));
      for (int32_t i = 0; i < q; ++i) in.hidden_rows.push_back(b * q + i);
    }
    return in;
  };
  std::vector<double> verify_ms, draft_ms;
  for (int i = 0; i < s.warmup + s.steps; ++i) {
    DS_CHECK(int64_t(pos) + 2 * q <= int64_t(cache.pages_per_seq) * cache.kv.page_size,
             "speculative bench: decode cache too small at step {}", i);
    const auto t0 = Clock::now();
    check_drawn(runner.run(verify_step()), "verify");
    const auto t1 = Clock::now();
    const runtime::StepOutput d = runner.run(draft_step());
    const auto t2 = Clock::now();
    DS_CHECK(d.drafts.size() == size_t(batch) && d.drafts[0].size() == size_t(drafts), "draft step: {} drafts",
             d.drafts.empty() ? 0 : d.drafts[0].size());
    pos += q;
    if (i < s.warmup) continue;
    verify_ms.push_back(ms_since(t0, t1));
    draft_ms.push_back(ms_since(t1, t2));
  }
  return {batch, drafts, median(verify_ms), median(draft_ms)};
}

PrefillResult run_prefill(const model::Model& m, MeteredBackend& be, int64_t tokens, int64_t chunk,
                          int32_t page_size, DType latent_dtype, uint64_t seed, bool profile, double sync_s) {
  const auto& cfg = m.config();
  runtime::RunnerConfig rc;
  rc.num_pages = int32_t((tokens + page_size - 1) / page_size);
  rc.page_size = page_size;
  rc.kv_cache_dtype = latent_dtype;
  runtime::ModelRunner runner(rc, m);
  runtime::GreedySampling greedy;
  std::mt19937 rng{uint32_t(seed)};
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  for (auto& id : ids) id = int32_t(3 + rng() % uint32_t(cfg.vocab_size - 3));
  std::vector<int32_t> table(static_cast<size_t>(rc.num_pages));
  for (int32_t p = 0; p < rc.num_pages; ++p) table[size_t(p)] = p;
  auto run = [&] {
    for (int64_t c0 = 0; c0 < tokens; c0 += chunk) {
      const int64_t c1 = std::min(tokens, c0 + chunk);
      runtime::StepInput in;
      in.mode = runtime::ForwardMode::Extend;
      model::SequenceChunk sc;
      sc.tokens.assign(ids.begin() + c0, ids.begin() + c1);
      sc.start_pos = int32_t(c0);
      sc.page_table = table;
      const bool last = c1 == tokens;
      sc.logits = last ? model::LogitsMode::Last : model::LogitsMode::None;
      in.batch.seqs.push_back(std::move(sc));
      in.sample.resize(1);
      if (last) in.sample = greedy.slots(1);
      check_drawn(runner.run(std::move(in)), "prefill");  // the last chunk ends with its token read back
    }
  };
  PrefillResult r;
  r.layers = cfg.num_hidden_layers;
  r.tokens = tokens;
  r.chunk = chunk;
  // Short prompts run up to 5 times (the median): one run of a few ms is too noisy to extrapolate from.
  std::vector<double> runs;
  while (runs.empty() || (runs.size() < 5 && runs.back() < 0.5)) {
    be.synchronize();
    be.reset();
    const auto t0 = Clock::now();
    run();  // ends with the token's readback: everything has run
    runs.push_back(ms_since(t0, Clock::now()) / 1e3);
    r.flops = be.totals().flops;
  }
  r.seconds = median(runs);
  if (profile) r.profile = profile_step(be, [&] { run(); }, sync_s);
  return r;
}

double measure_copy_bandwidth(MeteredBackend& be, int64_t bytes) {
  const int64_t cols = 1024, rows = std::max<int64_t>(1, bytes / (4 * cols));
  Tensor a = be.from_host(random_rows(rows, cols, 7)), b = be.alloc({rows, cols}, DType::F32);
  be.copy_cols(b, 0, a, 0, cols);  // warm-up
  be.synchronize();
  const int reps = 10;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) {
    if (i % 2) be.copy_cols(a, 0, b, 0, cols);
    else be.copy_cols(b, 0, a, 0, cols);
  }
  be.synchronize();
  const double s = ms_since(t0, Clock::now()) / 1e3;
  return 2.0 * double(rows * cols * 4) * reps / s;
}

double measure_sync_cost(MeteredBackend& be) {
  be.synchronize();
  std::vector<double> v;
  for (int i = 0; i < 21; ++i) {
    const auto t0 = Clock::now();
    be.synchronize();
    v.push_back(ms_since(t0, Clock::now()) / 1e3);
  }
  return median(v);
}

}  // namespace ds::perf
