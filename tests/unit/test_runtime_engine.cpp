// The engine end to end on the tiny golden model (CPU backend): continuous batching, paging,
// retraction, prefix cache, sampling and stop handling, checked against plain Model::forward; and its
// device-sampling path over a backend that samples "on its device" on the host.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "backend/backend.h"
#include "engine_test_util.h"
#include "host_sampling_backend.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/model_runner.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;

namespace {

using ds::testing::Collector;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    be_ = backend::make_cpu_backend(0).release();
    model_ = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be_).release();
  }
  EngineConfig config(int64_t total_tokens = 512) {
    EngineConfig c;
    c.page_size = 4;
    c.max_total_tokens = total_tokens;
    c.context_length = 128;
    c.eos_token_ids = {1};
    return c;
  }
  // Greedy continuation by recomputing the whole sequence each step (no engine, no paging tricks).
  std::vector<int32_t> reference_greedy(std::vector<int32_t> tokens, int n, DType kv = DType::F32) {
    std::vector<int32_t> out;
    const int64_t V = model_->config().vocab_size;
    for (int i = 0; i < n; ++i) {
      auto cache = model_->make_cache(64, 4, kv);
      model::ForwardBatch fb;
      model::SequenceChunk sc;
      sc.tokens = tokens;
      for (int p = 0; p < 64; ++p) sc.page_table.push_back(p);
      fb.seqs.push_back(sc);
      auto o = model_->forward(fb, cache);
      const float* row = o.logits.f32();
      int32_t best = int32_t(std::max_element(row, row + V) - row);
      out.push_back(best);
      tokens.push_back(best);
    }
    return out;
  }
  static GenerateRequest greedy(const std::string& id, std::vector<int32_t> prompt, int32_t max_new) {
    return ds::testing::greedy(id, std::move(prompt), max_new);
  }
  static std::vector<int32_t> prompt_of(int seed, int len) { return ds::testing::prompt_of(seed, len); }
  static backend::Backend* be_;
  static model::Model* model_;
};
backend::Backend* EngineTest::be_ = nullptr;
model::Model* EngineTest::model_ = nullptr;

}  // namespace

TEST_F(EngineTest, GreedyMatchesPlainForward) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto e = make_engine(config(), *model_, tok);
  Collector c;
  e->submit(greedy("a", prompt_of(1, 9), 6), c.sink("a"));
  auto r = c.wait("a");
  EXPECT_EQ(r.tokens, reference_greedy(prompt_of(1, 9), 6));
  EXPECT_EQ(r.last.finish_reason, FinishReason::Length);
  EXPECT_EQ(r.last.completion_tokens, 6);
  EXPECT_EQ(r.last.prompt_tokens, 9);
  EXPECT_EQ(r.text, tok.decode(r.tokens, true));
}

TEST_F(EngineTest, BatchedAndRetractedRequestsMatchSoloRuns) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  // 64 KV tokens for 8 requests that need 5 + 20 each: retraction must happen, and change nothing.
  auto e = make_engine(config(64), *model_, tok);
  Collector c;
  for (int i = 0; i < 8; ++i) e->submit(greedy("r" + std::to_string(i), prompt_of(i + 10, 5), 20), c.sink("r" + std::to_string(i)));
  for (int i = 0; i < 8; ++i) {
    auto r = c.wait("r" + std::to_string(i));
    EXPECT_EQ(r.tokens, reference_greedy(prompt_of(i + 10, 5), 20)) << i;
  }
  auto s = e->stats();
  EXPECT_GT(s.retractions_total, 0);
  EXPECT_EQ(s.used_pages, s.cached_pages) << "only the prefix cache may hold pages when idle";
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.requests_total, 8);
  EXPECT_EQ(s.generation_tokens_total, 8 * 20);
  // Step phases: every step plans, runs a forward, draws and delivers; no grammar, no drafts.
  const auto& p = s.phases;
  EXPECT_GT(p.plan_ms, 0);
  EXPECT_GT(p.forward_ms, 0);
  EXPECT_GT(p.draw_ms, 0);
  EXPECT_GT(p.output_ms, 0);
  EXPECT_EQ(p.masks_ms, 0);
  EXPECT_EQ(p.drafts_ms, 0);
  EXPECT_LE(p.plan_ms + p.forward_ms + p.draw_ms + p.output_ms, s.busy_ms_total * 1.0001);
}

TEST_F(EngineTest, PrefixCacheHitsAndFlush) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto e = make_engine(config(), *model_, tok);
  Collector c;
  auto p = prompt_of(3, 14);
  e->submit(greedy("first", p, 2), c.sink("first"));
  auto a = c.wait("first");
  EXPECT_EQ(a.last.cached_tokens, 0);
  e->submit(greedy("second", p, 2), c.sink("second"));
  auto b = c.wait("second");
  EXPECT_EQ(b.last.cached_tokens, 12) << "13 known tokens -> 3 whole pages of 4";
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(e->stats().cached_tokens_total, 12);
  EXPECT_TRUE(flush_cache_and_wait(*e));
  EXPECT_EQ(e->stats().cached_pages, 0);
  EXPECT_EQ(e->stats().used_pages, 0);
}

TEST_F(EngineTest, StopTokenIdsSeedsAndZeroMaxTokens) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto e = make_engine(config(), *model_, tok);
  Collector c;
  auto p = prompt_of(5, 7);
  auto ref = reference_greedy(p, 4);
  auto g = greedy("stop", p, 10);
  g.stop_token_ids = {ref[2]};
  e->submit(g, c.sink("stop"));
  auto r = c.wait("stop");
  const size_t first = size_t(std::find(ref.begin(), ref.end(), ref[2]) - ref.begin());
  EXPECT_EQ(r.tokens, std::vector<int32_t>(ref.begin(), ref.begin() + first + 1));
  EXPECT_EQ(r.last.finish_reason, FinishReason::Stop);
  ASSERT_TRUE(r.last.matched_stop_token);
  EXPECT_EQ(*r.last.matched_stop_token, ref[2]);

  // Same seed, same tokens; another seed, (almost surely) others.
  auto sampled = [&](const std::string& id, uint64_t seed) {
    GenerateRequest s = greedy(id, p, 12);
    s.sampling.temperature = 1.0f;
    s.sampling.seed = seed;
    s.sampling.logprobs = true;
    s.sampling.top_logprobs = 2;
    e->submit(s, c.sink(id));
    return c.wait(id);
  };
  auto s1 = sampled("s1", 42), s2 = sampled("s2", 42), s3 = sampled("s3", 43);
  EXPECT_EQ(s1.tokens, s2.tokens);
  EXPECT_NE(s1.tokens, s3.tokens);
  EXPECT_EQ(s1.last.logprobs.size(), 1u);
  EXPECT_EQ(s1.last.logprobs[0].top.size(), 2u);

  auto z = greedy("zero", p, 0);
  e->submit(z, c.sink("zero"));
  auto zr = c.wait("zero");
  EXPECT_TRUE(zr.tokens.empty());
  EXPECT_EQ(zr.last.finish_reason, FinishReason::Length);
}

TEST_F(EngineTest, RejectsWhatCanNeverRun) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto e = make_engine(config(64), *model_, tok);
  auto expect_status = [&](GenerateRequest r, int status) {
    try {
      e->submit(std::move(r), [](RequestOutput&&) {});
      ADD_FAILURE() << "accepted";
    } catch (const RequestRejected& x) {
      EXPECT_EQ(x.http_status(), status) << x.what();
    }
  };
  expect_status(greedy("empty", {}, 4), 400);
  expect_status(greedy("ctx", prompt_of(1, 100), 29), 400);      // 129 > context 128
  expect_status(greedy("pool", prompt_of(1, 50), 20), 400);      // 70 > 64 pool tokens
  expect_status(greedy("vocab", {5, 512}, 4), 400);
  auto bad = greedy("temp", {5}, 4);
  bad.sampling.top_p = 0;
  expect_status(bad, 400);
  auto cfg = config();
  cfg.max_queued_requests = 0;
  auto full = make_engine(cfg, *model_, tok);
  try {
    full->submit(greedy("q", {5}, 1), [](RequestOutput&&) {});
    ADD_FAILURE() << "accepted";
  } catch (const RequestRejected& x) {
    EXPECT_EQ(x.http_status(), 503);
  }
}

TEST_F(EngineTest, AbortAndShutdownFreeEverything) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto e = make_engine(config(), *model_, tok);
  Collector c;
  std::mutex m;
  std::condition_variable cv;
  bool started = false;
  auto inner = c.sink("long");
  e->submit(greedy("long", prompt_of(2, 8), 110), [&](RequestOutput&& o) {
    inner(std::move(o));
    std::lock_guard lk(m);
    started = true;
    cv.notify_all();
  });
  {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return started; });
  }
  e->abort("long");
  auto r = c.wait("long");
  EXPECT_EQ(r.last.finish_reason, FinishReason::Abort);
  EXPECT_LT(r.tokens.size(), 110u);
  auto s = e->stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.used_pages, s.cached_pages);

  // Shutdown with work in flight: every request gets its final Abort.
  for (int i = 0; i < 4; ++i) e->submit(greedy("s" + std::to_string(i), prompt_of(i, 6), 100), c.sink("s" + std::to_string(i)));
  e->shutdown();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(c.wait("s" + std::to_string(i)).finished);
  EXPECT_THROW(e->submit(greedy("late", {5}, 1), [](RequestOutput&&) {}), RequestRejected);
}

// ---------------------------------------------------------------- sampling on the backend's device

namespace {
std::unique_ptr<model::Model> load_on(backend::Backend& be) {
  return model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", be);
}
}  // namespace

TEST_F(EngineTest, DeviceSamplingEqualsHostSamplingForGreedyWithPenalties) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  fakes::HostSamplingBackend hb;
  auto m = load_on(hb);
  auto host = make_engine(config(), *model_, tok), dev = make_engine(config(), *m, tok);
  struct Case {
    std::string id;
    float rep, freq, pres;
  };
  const std::vector<Case> cases = {{"plain", 1, 0, 0}, {"rep", 1.7f, 0, 0}, {"freq", 1, 1.5f, 0.8f}, {"all", 0.6f, -0.7f, 1.1f}};
  Collector ch, cd;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto r = greedy(cases[i].id, prompt_of(int(i) + 4, 9), 16);
    r.sampling.repetition_penalty = cases[i].rep;
    r.sampling.frequency_penalty = cases[i].freq;
    r.sampling.presence_penalty = cases[i].pres;
    r.sampling.logprobs = true;
    r.sampling.top_logprobs = 3;
    host->submit(r, ch.sink(cases[i].id));
    dev->submit(r, cd.sink(cases[i].id));
  }
  std::vector<int32_t> plain;
  for (const auto& c : cases) {
    auto a = ch.wait(c.id), b = cd.wait(c.id);
    EXPECT_EQ(a.tokens, b.tokens) << c.id;
    ASSERT_EQ(a.last.logprobs.size(), b.last.logprobs.size()) << c.id;
    for (size_t j = 0; j < a.last.logprobs.size(); ++j) {
      EXPECT_NEAR(a.last.logprobs[j].logprob, b.last.logprobs[j].logprob, 1e-6) << c.id;
      EXPECT_EQ(a.last.logprobs[j].top.size(), 3u);
      EXPECT_EQ(a.last.logprobs[j].top, b.last.logprobs[j].top) << c.id;
    }
    if (c.id == "plain") plain = a.tokens;
    else EXPECT_NE(a.tokens, plain) << c.id << ": the penalties should change this greedy continuation";
  }
}

TEST_F(EngineTest, DeviceSamplingSeedsIgnoreBatchAndRetraction) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  fakes::HostSamplingBackend hb;
  auto m = load_on(hb);
  auto seeded = [&](const std::string& id) {
    GenerateRequest s = greedy(id, prompt_of(5, 7), 12);
    s.sampling.temperature = 1.0f;
    s.sampling.top_p = 0.9f;
    s.sampling.seed = 42;
    return s;
  };
  Collector c;
  auto alone = make_engine(config(), *m, tok);
  alone->submit(seeded("alone"), c.sink("alone"));
  auto a = c.wait("alone");
  alone->shutdown();
  const auto draws = hb.draws();
  ASSERT_EQ(draws.size(), 12u);
  for (size_t i = 0; i < draws.size(); ++i) EXPECT_EQ(draws[i], std::make_pair(uint64_t(42), uint64_t(i)));

  // In a crowded pool (retractions) beside unseeded requests: the same tokens.
  auto crowded = make_engine(config(64), *m, tok);
  for (int i = 0; i < 6; ++i) {
    auto o = greedy("o" + std::to_string(i), prompt_of(i + 20, 5), 20);
    o.sampling.temperature = 0.8f;
    crowded->submit(o, c.sink("o" + std::to_string(i)));
  }
  crowded->submit(seeded("crowded"), c.sink("crowded"));
  EXPECT_EQ(c.wait("crowded").tokens, a.tokens);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.wait("o" + std::to_string(i)).tokens.size(), 20u);
  EXPECT_GT(crowded->stats().retractions_total, 0);
}

TEST_F(EngineTest, DeviceSamplingHostFallbackAndFailedRows) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  fakes::HostSamplingBackend hb(/*max_top_logprobs=*/2);
  hb.fail_seed(7);
  auto m = load_on(hb);
  auto e = make_engine(config(), *m, tok);
  Collector c;
  auto many = greedy("many", prompt_of(6, 8), 5);  // more alternatives than the device gives: host path
  many.sampling.logprobs = true;
  many.sampling.top_logprobs = 5;
  auto bad = greedy("bad", prompt_of(7, 8), 5);  // the device reports its row as failed
  bad.sampling.temperature = 1.0f;
  bad.sampling.seed = 7;
  auto fine = greedy("fine", prompt_of(8, 8), 5);
  e->submit(many, c.sink("many"));
  e->submit(bad, c.sink("bad"));
  e->submit(fine, c.sink("fine"));
  auto rm = c.wait("many"), rb = c.wait("bad"), rf = c.wait("fine");
  EXPECT_EQ(rm.tokens, reference_greedy(prompt_of(6, 8), 5));
  ASSERT_EQ(rm.last.logprobs.size(), 1u);
  EXPECT_EQ(rm.last.logprobs[0].top.size(), 5u);
  EXPECT_EQ(rb.last.finish_reason, FinishReason::Error);
  EXPECT_NE(rb.last.error.find("NaN"), std::string::npos) << rb.last.error;
  EXPECT_EQ(rf.tokens, reference_greedy(prompt_of(8, 8), 5));
  EXPECT_EQ(hb.draws().size(), 6u) << "device rows: 'fine' 5 times, 'bad' once; 'many' never";
}

TEST_F(EngineTest, ForcedContinuationAfterItsTrigger) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  const auto prompt = prompt_of(4, 7);
  const auto free_run = reference_greedy(prompt, 3);
  // Once the model has produced free_run[1], it must go on with 300 then (301) or (302 303); greedy
  // picks the better of 301 / 302 from the model's own logits, then generation is free again.
  GenerateRequest req = greedy("f", prompt, 9);
  req.forced.trigger = {free_run[1]};
  req.forced.alternatives = {{300, 301}, {300, 302, 303}};
  std::vector<int32_t> expect = {free_run[0], free_run[1], 300};
  {
    auto ctx = prompt;
    ctx.insert(ctx.end(), expect.begin(), expect.end());
    auto cache = model_->make_cache(64, 4);
    model::ForwardBatch fb;
    model::SequenceChunk sc;
    sc.tokens = ctx;
    for (int p = 0; p < 64; ++p) sc.page_table.push_back(p);
    fb.seqs.push_back(sc);
    const float* row = model_->forward(fb, cache).logits.f32();
    if (row[301] >= row[302]) expect.push_back(301);
    else expect.insert(expect.end(), {302, 303});
  }
  auto ctx = prompt;
  ctx.insert(ctx.end(), expect.begin(), expect.end());
  const auto rest = reference_greedy(ctx, 9 - int(expect.size()));
  expect.insert(expect.end(), rest.begin(), rest.end());

  auto e = make_engine(config(), *model_, tok);
  Collector c;
  e->submit(req, c.sink("f"));
  EXPECT_EQ(c.wait("f").tokens, expect);
  // The same where the backend samples on its device: a step with one allowed token takes it without
  // sampling; the masked step (301 or 302) is the device's, under a token mask.
  fakes::HostSamplingBackend hb;
  auto m = load_on(hb);
  auto d = make_engine(config(), *m, tok);
  req.id = "f-device";
  d->submit(req, c.sink("f-device"));
  EXPECT_EQ(c.wait("f-device").tokens, expect);
  const size_t taken_steps = expect[3] == 301 ? 1 : 2;  // 300, or 300 and 303
  EXPECT_EQ(hb.draws().size(), 9u - taken_steps) << "single allowed tokens are taken, the masked step is the device's";

  // The constraint can hold only where the alternatives tell where it ends; ids must be in the vocabulary.
  auto expect_400 = [&](ForcedContinuation f) {
    GenerateRequest r = greedy("bad", prompt, 4);
    r.forced = std::move(f);
    try {
      e->submit(std::move(r), [](RequestOutput&&) {});
      ADD_FAILURE() << "accepted";
    } catch (const RequestRejected& x) {
      EXPECT_EQ(x.http_status(), 400) << x.what();
    }
  };
  expect_400({{}, {{300}, {300, 301}}});
  expect_400({{}, {{300, 9999}}});
  expect_400({{-1}, {{300}}});
}

// The same with FP8 KV pages (--kv-cache-dtype fp8_e4m3): rows are quantised one token at a time, so
// batching, retraction (recompute) and prefix sharing must give exactly the tokens of a plain forward
// over an FP8 cache.
TEST_F(EngineTest, Fp8PagesBatchedRetractedAndPrefixCached) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  RunnerConfig rc;
  rc.kv_cache_dtype = DType::F8_E4M3;
  {
    auto e = make_engine(config(64), *model_, tok, rc);
    Collector c;
    for (int i = 0; i < 8; ++i)
      e->submit(greedy("r" + std::to_string(i), prompt_of(i + 10, 5), 20), c.sink("r" + std::to_string(i)));
    for (int i = 0; i < 8; ++i) {
      auto r = c.wait("r" + std::to_string(i));
      EXPECT_EQ(r.tokens, reference_greedy(prompt_of(i + 10, 5), 20, DType::F8_E4M3)) << i;
    }
    EXPECT_GT(e->stats().retractions_total, 0);
    EXPECT_EQ(e->stats().used_pages, e->stats().cached_pages);
  }
  auto e = make_engine(config(), *model_, tok, rc);
  Collector c;
  auto p = prompt_of(3, 14);
  e->submit(greedy("first", p, 4), c.sink("first"));
  auto a = c.wait("first");
  e->submit(greedy("second", p, 4), c.sink("second"));
  auto b = c.wait("second");
  EXPECT_EQ(b.last.cached_tokens, 12);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens, reference_greedy(p, 4, DType::F8_E4M3));
}

// Data parallelism without DP attention (two replicas of one rank): requests spread over the groups,
// the same greedy outputs as one runner, and a prompt whose prefix one group has cached goes to it.
TEST_F(EngineTest, DataParallelGroupsRouteByLoadAndCachedPrefix) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  RunnerConfig rc;
  rc.num_pages = 512 / 4;
  rc.page_size = 4;
  ModelRunner r0(rc, *model_), r1(rc, *model_);
  auto e = make_dp_engine(config(), {{&r0}, {&r1}}, tok);
  Collector c;
  const auto long_prompt = prompt_of(7, 24);
  e->submit(greedy("a", long_prompt, 4), c.sink("a"));
  EXPECT_EQ(c.wait("a").tokens, reference_greedy(long_prompt, 4));
  auto again = long_prompt;
  again.push_back(42);
  // In turn this would be the other group; its first 24 tokens are cached where "a" ran.
  e->submit(greedy("c", again, 3), c.sink("c"));
  auto rc_ = c.wait("c");
  EXPECT_EQ(rc_.tokens, reference_greedy(again, 3));
  EXPECT_GE(rc_.last.cached_tokens, 20);
  e->submit(greedy("b", prompt_of(8, 9), 4), c.sink("b"));  // nothing cached anywhere: the group in turn
  EXPECT_EQ(c.wait("b").tokens, reference_greedy(prompt_of(8, 9), 4));
  const EngineStats s = e->stats();
  ASSERT_EQ(s.dp_groups.size(), 2u);
  EXPECT_EQ(s.dp_groups[0].requests_routed, 2);  // "a" and "c"
  EXPECT_EQ(s.dp_groups[1].requests_routed, 1);  // "b"
  EXPECT_EQ(s.requests_total, 3);
}
