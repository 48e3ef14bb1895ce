#include "runtime/model_runner.h"

#include <cstdio>
#include <cstdlib>

#include "dist/group.h"

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
  // Under DP attention every rank records every shape at start-up, together (never lazily: a first-sight
  // recording on one group would find the other groups' ranks running something else).
  if (cfg_.cuda_graph_max_bs > 0 && be.can_capture())
    recorder_ = std::make_unique<StepRecorder>(*model_, cfg_.cuda_graph_max_bs,
                                               cfg_.cuda_graph_lazy && !model_->tensor_parallel().dp_attention());
  device_sampling_ = cfg_.sample_on_device && be.can_sample();
}

int ModelRunner::record_graphs(int32_t max_batch, int32_t max_context) {
  if (!recorder_ || recorder_->lazy()) return 0;
  backend().make_current();
  Timer timer;
  std::optional<Progress> bar;
  const int made = recorder_->record_all(ForwardMode::Decode, 1, max_batch, max_context, kv_, [&](int, int total) {
    if (!bar) bar.emplace("recording CUDA graphs (decode steps)", uint64_t(total), "shapes");
    bar->add(1);
  });
  if (bar) bar->finish();
  spdlog::info("CUDA graphs: {} decode shapes recorded in {:.1f} s (batches up to {}, contexts up to {}); {} failed",
               made, timer.seconds(), std::min(max_batch, recorder_->max_bs()), max_context,
               recorder_->stats().failed);
  return made;
}

model::ForwardOutput ModelRunner::forward(const StepInput& in) {
  // Asked per step: a metering backend turns recording off while it profiles op by op.
  if (recorder_ && backend().can_capture())
    if (auto out = recorder_->forward(in.mode, in.batch, kv_)) return std::move(*out);
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
  DS_CHECK(in.sample.size() == in.batch.seqs.size(), "step: {} sampling slots for {} sequences", in.sample.size(),
           in.batch.seqs.size());
  backend().make_current();  // CUDA's current device is per thread: set it wherever the step runs
  maybe_fail_for_test(model_->tensor_parallel().rank, ++steps_);
  in.batch.logits_on_device = device_sampling_;  // the draws decide where the logits stay
  StepOutput res;
  res.tokens = DrawnTokens(in.sample.size());
  Timer fwd;
  model::ForwardOutput out = forward(in);
  res.forward_ms = fwd.seconds() * 1e3;
  // Every rank holds the same gathered logits; rank 0 (of its DP group) draws (the slots' generators and
  // penalty state belong to the request, which only one rank may advance), the others' tokens are not
  // read. An idle DP group's step has nothing to draw.
  if (model_->tensor_parallel().attn_rank() != 0 || in.sample.empty()) return res;
  if (in.before_sampling) in.before_sampling();
  const int64_t vocab = model_->config().vocab_size;
  if (device_sampling_) sample_on_device(backend(), in.sample, out, vocab, res.tokens);
  else sample_on_host(in.sample, out, vocab, res.tokens);
  return res;
}

}  // namespace ds::runtime
