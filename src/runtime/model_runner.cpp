#include "runtime/model_runner.h"

#include <cstdio>
#include <cstdlib>

#include "dist/group.h"
#include "runtime/draft_recorder.h"

#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/timer.h"

namespace ds::runtime {

namespace {
// Test hook (tests/e2e/server/test_parallel.sh): DSSERVE_FAIL_RANK=R@S makes tensor-parallel rank R
// throw at its S-th step (from 1), as a rank whose device failed would.
void maybe_fail_for_test(int rank, int64_t step) {
  static const char* spec = std::getenv("DSSERVE_FAIL_RANK");
  if (!spec) return;
  int r = -1;
  long long s = -1;
  if (std::sscanf(spec, "%d@%lld", &r, &s) == 2 && r == rank && s == step)
    fail("injected failure (DSSERVE_FAIL_RANK={}) at step {}", spec, step);
}
}  // namespace

ModelRunner::ModelRunner(const RunnerConfig& cfg, const model::Model& model) : cfg_(cfg), model_(&model) { init(); }

ModelRunner::ModelRunner(const RunnerConfig& cfg, const model::Model& model, model::KVCache pools)
    : cfg_(cfg), model_(&model) {
  DS_CHECK(pools.num_pages == cfg.num_pages && pools.page_size == cfg.page_size,
           "runner pools of {} pages of {} for a config of {} pages of {}", pools.num_pages, pools.page_size,
           cfg.num_pages, cfg.page_size);
  init(std::move(pools));
}

ModelRunner::ModelRunner(const RunnerConfig& cfg, std::unique_ptr<backend::Backend> be,
                         std::unique_ptr<model::Model> model)
    : cfg_(cfg), owned_backend_(std::move(be)), owned_model_(std::move(model)), model_(owned_model_.get()) {
  DS_CHECK(model_ && &model_->backend() == owned_backend_.get(), "a runner owns a model with the backend it is on");
  init();
}

ModelRunner::~ModelRunner() = default;

void ModelRunner::init(std::optional<model::KVCache> pools) {
  cfg_.parallel.validate();
  DS_CHECK(cfg_.num_pages >= 1, "the KV pool must hold at least one page, got {} pages", cfg_.num_pages);
  backend::Backend& be = backend();
  be.make_current();
  kv_ = pools ? std::move(*pools) : model_->make_cache(cfg_.num_pages, cfg_.page_size, cfg_.kv_cache_dtype);
  DS_CHECK(cfg_.draft_steps >= 0, "draft steps must be >= 0, got {}", cfg_.draft_steps);
  if (cfg_.draft_steps > 0) {
    DS_CHECK(model_->has_mtp(), "speculative decoding needs the checkpoint's MTP layer (num_nextn_predict_layers)");
    // Recorded target steps leave their hidden states here: up to a verify step of the largest batch.
    if (cfg_.cuda_graph_max_bs > 0 && be.can_capture())
      hidden_buffer_ = be.alloc({int64_t(cfg_.cuda_graph_max_bs) * (cfg_.draft_steps + 1), model_->config().hidden_size},
                                be.act_dtype());
  }
  // Under DP attention every rank records every shape at start-up, together (never lazily: a first-sight
  // recording on one group would find the other groups' ranks running something else).
  if (cfg_.cuda_graph_max_bs > 0 && be.can_capture())
    recorder_ = std::make_unique<StepRecorder>(*model_, cfg_.cuda_graph_max_bs,
                                               cfg_.cuda_graph_lazy && !model_->tensor_parallel().dp_attention(),
                                               hidden_buffer_.defined() ? &hidden_buffer_ : nullptr);
  static const bool padded_eager_env = [] {  // the e2e tests' servers (RunnerConfig::padded_eager)
    const char* v = std::getenv("DSSERVE_PADDED_EAGER");
    return v && std::string(v) == "1";
  }();
  if (!recorder_ && (cfg_.padded_eager || padded_eager_env) && cfg_.cuda_graph_max_bs > 0) {
    if (cfg_.draft_steps > 0)
      hidden_buffer_ = be.alloc({int64_t(cfg_.cuda_graph_max_bs) * (cfg_.draft_steps + 1), model_->config().hidden_size},
                                be.act_dtype());
    recorder_ = std::make_unique<StepRecorder>(*model_, cfg_.cuda_graph_max_bs, false,
                                               hidden_buffer_.defined() ? &hidden_buffer_ : nullptr);
    padded_eager_ = true;
    spdlog::info("tests: decode and verify steps run in the recorded steps' padded layout, op by op");
  }
  if (recorder_ && cfg_.draft_steps > 0) recorder_->set_verify_tokens(cfg_.draft_steps + 1);
  device_sampling_ = cfg_.sample_on_device && be.can_sample();
  // Draft steps recorded too (DSSERVE_DRAFT_GRAPHS=0: not), or their padded layout op by op for tests.
  static const bool draft_graphs_off = [] {  // A/B runs on the GPU (scripts/gpu-spec-check.sh)
    const char* v = std::getenv("DSSERVE_DRAFT_GRAPHS");
    return v && std::string(v) == "0";
  }();
  if (cfg_.draft_steps > 0) {
    if (recorder_ && !padded_eager_ && !draft_graphs_off)
      draft_recorder_ = std::make_unique<DraftRecorder>(*model_, cfg_.cuda_graph_max_bs, cfg_.draft_steps, true,
                                                        recorder_->lazy());
    else if (cfg_.draft_padded_eager || padded_eager_)
      draft_recorder_ = std::make_unique<DraftRecorder>(*model_, std::max(1, cfg_.cuda_graph_max_bs), cfg_.draft_steps,
                                                        false);
  }
}

int ModelRunner::record_graphs(int32_t max_batch, int32_t max_context) {
  if (!recorder_ || recorder_->lazy()) return 0;
  backend().make_current();
  Timer timer;
  std::optional<Progress> bar;
  auto progress = [&](const char* what) {
    return [&bar, what](int, int total) {
      if (!bar) bar.emplace(fmt::format("recording CUDA graphs ({} steps)", what), uint64_t(total), "shapes");
      bar->add(1);
    };
  };
  int made = recorder_->record_all(ForwardMode::Decode, 1, max_batch, max_context, kv_, progress("decode"));
  if (bar) bar->finish();
  if (cfg_.draft_steps > 0) {  // speculative decoding's verify steps: the last token + every draft
    bar.reset();
    made += recorder_->record_all(ForwardMode::TargetVerify, cfg_.draft_steps + 1, max_batch, max_context, kv_,
                                  progress("verify"));
    if (bar) bar->finish();
  }
  if (draft_recorder_) {  // and its draft passes
    bar.reset();
    made += draft_recorder_->record_all(max_batch, max_context, kv_, progress("draft"));
    if (bar) bar->finish();
  }
  spdlog::info("CUDA graphs: {} decode{} shapes recorded in {:.1f} s (batches up to {}, contexts up to {}); {} failed",
               made, cfg_.draft_steps > 0 ? ", verify and draft" : "", timer.seconds(), std::min(max_batch, recorder_->max_bs()), max_context,
               recorder_->stats().failed);
  return made;
}

model::ForwardOutput ModelRunner::forward(const StepInput& in) {
  // Asked per step: a metering backend turns recording off while it profiles op by op.
  if (recorder_ && backend().can_capture())
    if (auto out = recorder_->forward(in.mode, in.batch, kv_)) return std::move(*out);
  if (padded_eager_ && recorder_->eligible(in.mode, in.batch))
    return recorder_->forward_padded_eager(in.mode, in.batch, kv_);
  return model_->forward(in.batch, kv_);
}

StepOutput ModelRunner::run(StepInput in) {
  const model::TensorParallel& tp = model_->tensor_parallel();
  if (tp.single()) return run_step(std::move(in));
  try {
    return run_step(std::move(in));
  } catch (const dist::GroupAborted& e) {
    // Another rank failed first; its message is the group's. Pass it on to this rank's other group (DP
    // attention), whose ranks may be waiting for this one.
    tp.abort(e.what());
    throw;
  } catch (const std::exception& e) {
    // The other ranks may be waiting for this one in a collective: wake them with the reason. The
    // replica is unusable from here on, which GroupAborted tells the engine.
    const std::string why = fmt::format("rank {} of {} failed: {}", tp.rank, tp.size, e.what());
    tp.abort(why);
    throw dist::GroupAborted(why, true);
  }
}

StepOutput ModelRunner::run_step(StepInput in) {
  backend().make_current();  // CUDA's current device is per thread: set it wherever the step runs
  maybe_fail_for_test(model_->tensor_parallel().rank, ++steps_);
  if (in.mode == ForwardMode::DraftExtend) return run_draft(std::move(in));
  size_t rows = in.batch.seqs.size();
  if (in.sample_per_row) {
    rows = 0;
    for (const auto& sc : in.batch.seqs)
      rows += sc.logits == model::LogitsMode::All ? sc.tokens.size() : sc.logits == model::LogitsMode::Last ? 1 : 0;
  }
  DS_CHECK(in.sample.size() == rows, "step: {} sampling slots for {} {}", in.sample.size(), rows,
           in.sample_per_row ? "logits rows" : "sequences");
  in.batch.logits_on_device = device_sampling_;  // the draws decide where the logits stay
  if (in.keep_hidden) {
    DS_CHECK(cfg_.draft_steps > 0, "a step keeps hidden states for drafts, but the runner has no draft steps");
    in.batch.want_hidden = in.batch.hidden_on_device = true;
  }
  last_hidden_ = Tensor();
  StepOutput res;
  res.tokens = DrawnTokens(in.sample.size());
  Timer fwd;
  model::ForwardOutput out = forward(in);
  res.forward_ms = fwd.seconds() * 1e3;
  if (in.keep_hidden) last_hidden_ = std::move(out.hidden);
  if (in.sample_per_row) {  // slot k reads logits row k
    out.logits_row0.resize(rows);
    for (size_t k = 0; k < rows; ++k) out.logits_row0[k] = int32_t(k);
  }
  // Every rank holds the same gathered logits; rank 0 (of its DP group) draws (the slots' generators and
  // penalty state belong to the request, which only one rank may advance), the others' tokens are not
  // read. An idle DP group's step has nothing to draw.
  if (model_->tensor_parallel().attn_rank() != 0 || in.sample.empty()) return res;
  Timer phase;
  if (in.before_sampling) {
    in.before_sampling();
    res.masks_ms = phase.seconds() * 1e3;
    phase.reset();
  }
  const int64_t vocab = model_->config().vocab_size;
  if (device_sampling_) sample_on_device(backend(), in.sample, out, vocab, res.tokens);
  else sample_on_host(in.sample, out, vocab, res.tokens);
  res.draw_ms = phase.seconds() * 1e3;
  return res;
}

}  // namespace ds::runtime
