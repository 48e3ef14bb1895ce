// Limits that must hold against hostile load: --max-queued-requests is never exceeded while the engine
// runs (no race between submit and the engine thread); aborts and shutdown take effect inside a long
// step (the forward stops between layers once every request of the step is aborted,
// runtime/step_cancel.h) instead of at its end.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "host_sampling_backend.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;

namespace {

// The CPU backend with a slow RMSNorm while `slow` is set: a step of the tiny model (3 layers, 2-3
// norms each) then takes ~2.8 s, each layer ~0.8-1.2 s.
class SlowBackend : public fakes::HostSamplingBackend {
 public:
  std::atomic<bool> slow{false};
  std::atomic<int> slow_calls{0};
  Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps) override {
    if (slow) {
      ++slow_calls;
      std::this_thread::sleep_for(std::chrono::milliseconds(kNormMs));
    }
    return HostSamplingBackend::rmsnorm(x, w, eps);
  }
  static constexpr int kNormMs = 400;
};

struct Final {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<RequestOutput> out;
  std::chrono::steady_clock::time_point at;
  OutputSink sink() {
    return [this](RequestOutput&& o) {
      if (!o.finished) return;
      std::lock_guard lk(mu);
      out = std::move(o);
      at = std::chrono::steady_clock::now();
      cv.notify_all();
    };
  }
  bool wait(double s = 30) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, std::chrono::duration<double>(s), [&] { return out.has_value(); });
  }
};

EngineConfig config() {
  EngineConfig c;
  c.page_size = 4;
  c.max_total_tokens = 512;
  c.context_length = 128;
  c.eos_token_ids = {1};
  return c;
}

GenerateRequest request(const std::string& id, int32_t max_new) {
  GenerateRequest r;
  r.id = id;
  for (int i = 0; i < 40; ++i) r.prompt.push_back(3 + (i * 17) % 500);
  r.max_new_tokens = max_new;
  r.sampling.temperature = 0;
  r.sampling.ignore_eos = true;
  return r;
}

void wait_for_slow_step(SlowBackend& be) {
  while (be.slow_calls == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

double seconds_since(std::chrono::steady_clock::time_point t0, std::chrono::steady_clock::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace

TEST(EngineCancel, AbortStopsTheStepBetweenLayersAndTheEngineGoesOn) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  SlowBackend be;
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", be);
  auto e = make_engine(config(), *model, tok);
  // The reference: the same request without aborts, fast.
  Final ref;
  e->submit(request("ref", 3), ref.sink());
  ASSERT_TRUE(ref.wait());

  be.slow = true;
  Final f;
  e->submit(request("victim", 3), f.sink());
  wait_for_slow_step(be);
  const auto t0 = std::chrono::steady_clock::now();
  e->abort("victim");
  ASSERT_TRUE(f.wait());
  EXPECT_EQ(f.out->finish_reason, FinishReason::Abort);
  // A whole step is 7 slow norms (2.8 s); cancelled at the next layer boundary: <= 3 norms later.
  EXPECT_LT(seconds_since(t0, f.at), 5 * SlowBackend::kNormMs / 1000.0);
  EXPECT_LT(be.slow_calls.load(), 6);
  be.slow = false;
  EXPECT_EQ(e->stats().used_pages, e->stats().cached_pages) << "the aborted request's pages are free";

  // The engine still computes correctly after an abandoned step (its KV writes were in freed pages).
  Final again;
  e->submit(request("again", 3), again.sink());
  ASSERT_TRUE(again.wait());
  EXPECT_EQ(again.out->finish_reason, FinishReason::Length);
  EXPECT_EQ(again.out->completion_tokens, 3);
}

TEST(EngineCancel, AStepWithARequestStillWantedIsNotCancelled) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  SlowBackend be;
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", be);
  auto e = make_engine(config(), *model, tok);
  be.slow = true;
  Final a, b;
  e->submit(request("a", 5), a.sink());  // still running after the step: its abort is what ends it
  auto rb = request("b", 1);
  rb.prompt[0] = 7;  // no shared prefix: both prefill in the same step
  e->submit(rb, b.sink());
  wait_for_slow_step(be);
  e->abort("a");
  ASSERT_TRUE(b.wait());
  ASSERT_TRUE(a.wait());
  be.slow = false;
  EXPECT_EQ(a.out->finish_reason, FinishReason::Abort);
  EXPECT_EQ(b.out->finish_reason, FinishReason::Length);
  EXPECT_EQ(b.out->completion_tokens, 1);
}

TEST(EngineCancel, ShutdownDuringALongStepIsQuick) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  SlowBackend be;
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", be);
  auto e = make_engine(config(), *model, tok);
  be.slow = true;
  Final f;
  e->submit(request("r", 5), f.sink());
  wait_for_slow_step(be);
  const auto t0 = std::chrono::steady_clock::now();
  e->shutdown();
  const double took = seconds_since(t0, std::chrono::steady_clock::now());
  be.slow = false;
  ASSERT_TRUE(f.wait(0));
  EXPECT_EQ(f.out->finish_reason, FinishReason::Abort);
  EXPECT_LT(took, 5 * SlowBackend::kNormMs / 1000.0);
}

TEST(EngineLimits, MaxQueuedRequestsHoldsWhileTheEngineRuns) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  SlowBackend be;  // not slow: steps as fast as they come, so submits interleave with many steps
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", be);
  EngineConfig cfg = config();
  cfg.max_running_requests = 1;
  cfg.max_queued_requests = 20;
  auto e = make_engine(cfg, *model, tok);
  std::atomic<int> finished{0};
  int accepted = 0;
  for (int i = 0; i < 400; ++i) {
    GenerateRequest r = request(fmt::format("q{}", i), 80);
    r.prompt.resize(4);
    try {
      e->submit(std::move(r), [&finished](RequestOutput&& o) { finished += o.finished; });
      ++accepted;
    } catch (const RequestRejected& x) {
      EXPECT_EQ(x.http_status(), 503);
    }
    // Every request ever accepted is queued (<= 20), running (<= 1) or finished.
    EXPECT_LE(accepted, 21 + finished.load()) << "after submit " << i;
  }
  e->shutdown();
}
