// The engine's side of prefill/decode disaggregation (runtime/engine_pd.cpp) over an in-process handoff (no
// transport): a prefill engine and a decode engine with different page sizes give the greedy tokens of a
// plain forward (fp32 and FP8 KV pools); KV that never comes, a full decode pool, a prefill-side failure
// and an abort all end the decode-side request with the reason and give every page back; packing alone.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "backend/backend.h"
#include "engine_test_util.h"
#include "model/make_model.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/kv_handoff.h"
#include "runtime/kv_pack.h"
#include "runtime/model_runner.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;
using ds::testing::Collector;

namespace {

// Both ends of a handoff in one process: a room's KV goes to the decode end once both sides have it.
struct Wire {
  std::mutex mu;
  std::map<uint64_t, KvArrival> sent;   // by the prefill side, not yet asked for
  std::map<uint64_t, bool> expected;    // by the decode side
  std::vector<KvArrival> arrived;
  std::function<void()> wake;
  bool deliver = true;  // false: KV is never delivered (a transfer that does not happen)

  void match(uint64_t room, std::unique_lock<std::mutex>& lk) {
    auto s = sent.find(room);
    if (!deliver || s == sent.end() || !expected.count(room)) return;
    arrived.push_back(std::move(s->second));
    sent.erase(s);
    expected.erase(room);
    auto w = wake;
    lk.unlock();
    if (w) w();
  }
};

class LoopbackHandoff final : public KvHandoff {
 public:
  LoopbackHandoff(Wire& w, DisaggMode m, double timeout) : w_(w), mode_(m), timeout_(timeout) {}
  DisaggMode mode() const override { return mode_; }
  void send(const BootstrapRoom& r, HostBytes packed, std::string error) override {
    std::unique_lock lk(w_.mu);
    w_.sent[r.room] = {r.room, std::move(packed), std::move(error)};
    w_.match(r.room, lk);
  }
  void expect(const BootstrapRoom& r) override {
    std::unique_lock lk(w_.mu);
    w_.expected[r.room] = true;
    w_.match(r.room, lk);
  }
  void forget(uint64_t room) override {
    std::lock_guard lk(w_.mu);
    w_.expected.erase(room);
  }
  std::vector<KvArrival> take_arrivals() override {
    std::lock_guard lk(w_.mu);
    return std::exchange(w_.arrived, {});
  }
  void set_wakeup(std::function<void()> wake) override {
    std::lock_guard lk(w_.mu);
    if (mode_ == DisaggMode::Decode) w_.wake = std::move(wake);
  }
  double timeout_s() const override { return timeout_; }

 private:
  Wire& w_;
  DisaggMode mode_;
  double timeout_;
};

class PdEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    be_ = backend::make_cpu_backend(0).release();
    model_ = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be_).release();
  }
  static EngineConfig config(int32_t page_size, int64_t total_tokens, KvHandoff* h) {
    EngineConfig c;
    c.page_size = page_size;
    c.max_total_tokens = total_tokens;
    c.context_length = 128;
    c.eos_token_ids = {1};
    c.kv_handoff = h;
    return c;
  }
  std::vector<int32_t> reference_greedy(std::vector<int32_t> tokens, int n, DType kv) {
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
      out.push_back(int32_t(std::max_element(row, row + V) - row));
      tokens.push_back(out.back());
    }
    return out;
  }
  static GenerateRequest pd_request(const std::string& id, std::vector<int32_t> prompt, int32_t max_new, uint64_t room) {
    GenerateRequest r = ds::testing::greedy(id, std::move(prompt), max_new);
    r.bootstrap = BootstrapRoom{"127.0.0.1", 1, room};
    return r;
  }
  static void expect_idle(Engine& e) {
    for (int i = 0; i < 200 && (e.stats().running || e.stats().queued); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const EngineStats s = e.stats();
    EXPECT_EQ(s.running, 0);
    EXPECT_EQ(s.queued, 0);
    EXPECT_EQ(s.used_pages, s.cached_pages) << "pages held by requests";
  }
  static backend::Backend* be_;
  static model::Model* model_;
};
backend::Backend* PdEngineTest::be_ = nullptr;
model::Model* PdEngineTest::model_ = nullptr;

}  // namespace

TEST_F(PdEngineTest, PrefillThenDecodeMatchesPlainForward) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  for (DType kv : {DType::F32, DType::F8_E4M3}) {
    SCOPED_TRACE(std::string(dtype_name(kv)));
    Wire wire;
    LoopbackHandoff pre_h(wire, DisaggMode::Prefill, 10), dec_h(wire, DisaggMode::Decode, 10);
    RunnerConfig rc;
    rc.kv_cache_dtype = kv;
    // Different page sizes on the two sides: the KV travels per token.
    auto pre = make_engine(config(4, 256, &pre_h), *model_, tok, rc);
    auto dec = make_engine(config(8, 256, &dec_h), *model_, tok, rc);
    Collector c;
    const std::vector<std::pair<int, int>> prompts = {{1, 9}, {2, 17}, {3, 4}};
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto p = ds::testing::prompt_of(prompts[i].first, prompts[i].second);
      const std::string id = "r" + std::to_string(i);
      // The decode side first for one, the prefill side first for the others: the rooms meet either way.
      if (i == 0) dec->submit(pd_request(id, p, 6, 100 + i), c.sink("d" + id));
      pre->submit(pd_request(id, p, 6, 100 + i), c.sink("p" + id));
      if (i != 0) dec->submit(pd_request(id, p, 6, 100 + i), c.sink("d" + id));
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto want = reference_greedy(ds::testing::prompt_of(prompts[i].first, prompts[i].second), 6, kv);
      const std::string id = "r" + std::to_string(i);
      auto p = c.wait("p" + id);
      EXPECT_EQ(p.tokens, std::vector<int32_t>{want[0]}) << "the prefill side stops after the first token";
      auto d = c.wait("d" + id);
      EXPECT_EQ(d.tokens, want) << id;
      EXPECT_EQ(d.last.finish_reason, FinishReason::Length);
      EXPECT_EQ(d.last.prompt_tokens, prompts[i].second);
    }
    // Logprobs with alternatives: the first token's (drawn on the prefill side) travel with the KV, so the
    // decode side reports what one plain server does for every token.
    {
      const auto lp_prompt = ds::testing::prompt_of(5, 11);
      auto with_logprobs = [](GenerateRequest r) {
        r.sampling.logprobs = true;
        r.sampling.top_logprobs = 3;
        return r;
      };
      dec->submit(with_logprobs(pd_request("lp", lp_prompt, 4, 200)), c.sink("dlp"));
      pre->submit(with_logprobs(pd_request("lp", lp_prompt, 4, 200)), c.sink("plp"));
      pre->submit(with_logprobs(ds::testing::greedy("lp-plain", lp_prompt, 4)), c.sink("lp-plain"));
      const auto d = c.wait("dlp"), plain = c.wait("lp-plain");
      c.wait("plp");
      ASSERT_EQ(d.logprobs.size(), 4u);
      ASSERT_EQ(plain.logprobs.size(), 4u);
      for (size_t t = 0; t < 4; ++t) {
        EXPECT_EQ(d.logprobs[t].token, plain.logprobs[t].token) << t;
        EXPECT_NEAR(d.logprobs[t].logprob, plain.logprobs[t].logprob, 1e-5) << t;
        ASSERT_EQ(d.logprobs[t].top.size(), 3u) << "token " << t << ": alternatives lost";
        for (size_t j = 0; j < 3; ++j) {
          EXPECT_EQ(d.logprobs[t].top[j].first, plain.logprobs[t].top[j].first) << t << "/" << j;
          EXPECT_NEAR(d.logprobs[t].top[j].second, plain.logprobs[t].top[j].second, 1e-5) << t << "/" << j;
        }
      }
    }
    // A request without bootstrap fields is served whole on either side.
    const auto p = ds::testing::prompt_of(9, 7);
    pre->submit(ds::testing::greedy("plain", p, 3), c.sink("plain"));
    EXPECT_EQ(c.wait("plain").tokens, reference_greedy(p, 3, kv));
    expect_idle(*pre);
    expect_idle(*dec);
  }
}

// Speculative decoding on both sides: the prefill server extends the MTP layer over the whole prompt and
// drafts after the first token; the MTP rows and the drafts travel with the KV, so the decode server verifies
// in its first step what one plain speculating server would: the same tokens, and per request the same
// verify steps, drafts and accepted drafts (drafts that differ, or MTP KV that did not come, change those).
TEST_F(PdEngineTest, SpeculationGoesOnOnTheDecodeSide) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  // A bigram model whose bigram draft also reads the MTP layer's own KV (its attention output kept at a
  // scale): drafts often accepted, and different where that KV is wrong.
  const std::string dir =
      (std::filesystem::temp_directory_path() / fmt::format("dsserve-pd-spec-{}", ::getpid())).string();
  model::MakeModelOptions mo;
  mo.preset = "tiny";
  mo.seed = 7;
  mo.bigram_mtp = true;
  mo.layer_output_scale = 0;
  mo.mtp_attention_scale = 1.0f;  // (0.3-1: about a third to two thirds of the drafts accepted)
  model::make_model(mo, dir);
  auto loaded = model::Model::load(dir, *be_);
  std::filesystem::remove_all(dir);
  model::Model* model_ = loaded.get();
  constexpr int32_t kSteps = 3;
  auto spec_config = [&](int32_t page_size, KvHandoff* h) {
    EngineConfig c = config(page_size, 512, h);
    c.speculative_num_steps = kSteps;
    c.speculative_min_accept_length = 0;
    return c;
  };
  RunnerConfig rc;
  rc.draft_steps = kSteps;
  const std::vector<std::pair<int, int>> prompts = {{1, 9}, {2, 30}, {3, 4}, {4, 13}};
  auto request = [&](size_t i, bool pd) {
    const std::string id = "r" + std::to_string(i);
    const auto p = ds::testing::prompt_of(prompts[i].first, prompts[i].second);
    return pd ? pd_request(id, p, 24, 200 + i) : ds::testing::greedy(id, p, 24);
  };
  // One plain speculating engine, one request at a time (the pair below runs them one at a time too).
  std::vector<Collector::Result> want;
  {
    auto plain = make_engine(spec_config(4, nullptr), *model_, tok, rc);
    Collector c;
    for (size_t i = 0; i < prompts.size(); ++i) {
      plain->submit(request(i, false), c.sink("r" + std::to_string(i)));
      want.push_back(c.wait("r" + std::to_string(i)));
    }
  }
  Wire wire;
  LoopbackHandoff pre_h(wire, DisaggMode::Prefill, 10), dec_h(wire, DisaggMode::Decode, 10);
  auto pre = make_engine(spec_config(4, &pre_h), *model_, tok, rc);
  auto dec = make_engine(spec_config(8, &dec_h), *model_, tok, rc);
  int64_t accepted = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    Collector c;
    dec->submit(request(i, true), c.sink("d"));
    pre->submit(request(i, true), c.sink("p"));
    const auto d = c.wait("d");
    c.wait("p");
    EXPECT_EQ(d.last.finish_reason, FinishReason::Length);
    EXPECT_EQ(d.tokens, want[i].tokens);
    EXPECT_EQ(d.last.spec_verify_ct, want[i].last.spec_verify_ct);
    EXPECT_EQ(d.last.spec_draft_tokens, want[i].last.spec_draft_tokens);
    EXPECT_EQ(d.last.spec_accept_tokens, want[i].last.spec_accept_tokens);
    accepted += want[i].last.spec_accept_tokens - want[i].last.spec_verify_ct;
  }
  EXPECT_GT(accepted, 0) << "no draft was accepted anywhere: the comparison above would not see wrong drafts";
  expect_idle(*pre);
  expect_idle(*dec);
}

TEST_F(PdEngineTest, MissingKvFullPoolFailureAndAbortFreeEveryPage) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  Wire wire;
  wire.deliver = false;
  LoopbackHandoff dec_h(wire, DisaggMode::Decode, 0.5);
  // 4 pages of 4: two parked 6-token prompts take them all, a third finds no pages.
  auto dec = make_engine(config(4, 16, &dec_h), *model_, tok);
  Collector c;
  dec->submit(pd_request("a", ds::testing::prompt_of(1, 6), 4, 1), c.sink("a"));
  dec->submit(pd_request("b", ds::testing::prompt_of(2, 6), 4, 2), c.sink("b"));
  for (int i = 0; i < 200 && dec->stats().used_pages < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(dec->stats().used_pages, 4);
  EXPECT_EQ(dec->stats().queued, 2) << "parked requests count as queued";
  dec->submit(pd_request("c", ds::testing::prompt_of(3, 6), 4, 3), c.sink("c"));
  dec->abort("b");
  auto b = c.wait("b");
  EXPECT_EQ(b.last.finish_reason, FinishReason::Abort);
  auto a = c.wait("a");
  EXPECT_EQ(a.last.finish_reason, FinishReason::Error);
  EXPECT_NE(a.last.error.find("did not arrive"), std::string::npos) << a.last.error;
  auto cc = c.wait("c");  // b's pages came back after its abort: c waited for KV, not pages
  EXPECT_EQ(cc.last.finish_reason, FinishReason::Error);
  expect_idle(*dec);
  // Now fill the pool with one parked request per page pair and ask for a third: no pages within the timeout.
  dec->submit(pd_request("d", ds::testing::prompt_of(4, 6), 4, 4), c.sink("d"));
  dec->submit(pd_request("e", ds::testing::prompt_of(5, 6), 4, 5), c.sink("e"));
  dec->submit(pd_request("f", ds::testing::prompt_of(6, 6), 4, 6), c.sink("f"));
  auto f = c.wait("f");
  EXPECT_EQ(f.last.finish_reason, FinishReason::Error);
  EXPECT_NE(f.last.error.find("KV cache full"), std::string::npos) << f.last.error;
  c.wait("d");
  c.wait("e");
  expect_idle(*dec);
  // The prefill side failed the request: the decode side hears the reason at once.
  {
    std::lock_guard lk(wire.mu);
    wire.deliver = true;
  }
  LoopbackHandoff pre_h(wire, DisaggMode::Prefill, 0.5);
  dec->submit(pd_request("g", ds::testing::prompt_of(7, 6), 4, 7), c.sink("g"));
  pre_h.send({"127.0.0.1", 1, 7}, {}, "the request ended with finish reason abort");
  auto g = c.wait("g");
  EXPECT_EQ(g.last.finish_reason, FinishReason::Error);
  EXPECT_NE(g.last.error.find("finish reason abort"), std::string::npos) << g.last.error;
  expect_idle(*dec);
  // A prefill server over its limit of KV held for decode servers: the hand-off fails with that reason, and
  // the decode side hears it at once; nothing is held on either side afterwards.
  EngineConfig limited = config(4, 64, &pre_h);
  limited.pd_kv_buffer_limit_bytes = 1;
  auto pre = make_engine(limited, *model_, tok);
  dec->submit(pd_request("h", ds::testing::prompt_of(8, 6), 4, 8), c.sink("h"));
  pre->submit(pd_request("h", ds::testing::prompt_of(8, 6), 4, 8), c.sink("ph"));
  auto h = c.wait("h");
  EXPECT_EQ(h.last.finish_reason, FinishReason::Error);
  EXPECT_NE(h.last.error.find("would pass the limit"), std::string::npos) << h.last.error;
  c.wait("ph");
  expect_idle(*pre);
  expect_idle(*dec);
  EXPECT_EQ(pre->stats().pd.buffer_lent_bytes, 0);
}

// Packing and unpacking alone: scattered and consecutive pages, different page sizes; every pool's rows of
// the packed tokens arrive at their new slots, byte for byte; a pool of another shape is refused.
TEST_F(PdEngineTest, PackedRowsLandAtTheirNewSlots) {
  RunnerConfig a_cfg, b_cfg;
  a_cfg.num_pages = 12, a_cfg.page_size = 4;
  b_cfg.num_pages = 6, b_cfg.page_size = 8;
  // b and b2: the two ranks of a decode side with --tp 2 (one page table, one page size).
  ModelRunner a(a_cfg, *model_), b(b_cfg, *model_), b2(b_cfg, *model_);
  auto pools = [](ModelRunner& r) {
    std::vector<Tensor*> all;
    for (auto* v : {&r.kv().latent, &r.kv().index_k})
      for (Tensor& t : *v) all.push_back(&t);
    return all;
  };
  const std::vector<Tensor*> a_pools = pools(a);
  ASSERT_EQ(a_pools.size(), pools(b).size());
  uint8_t x = 7;
  for (Tensor* t : a_pools)
    for (size_t i = 0; i < t->nbytes(); ++i) static_cast<uint8_t*>(t->raw())[i] = x = uint8_t(x * 73 + 11);
  const std::vector<int32_t> a_pages = {5, 2, 3, 9}, b_pages = {4, 1};  // 2 -> 3 consecutive: one run
  const int32_t tokens = 13;
  auto buffers = HostBufferPool::make([&](size_t n) { return a.backend().alloc_host_bytes(n); }, size_t(64) << 20);
  PackedKvHead sent{42, -0.5f, tokens, {17, 5}, {{42, -0.5f}, {9, -1.25f}}};
  const HostBytes packed = pack_prompt_kv(a, a_pages, sent, *buffers);
  EXPECT_GT(buffers->stats().lent_bytes, 0u);
  const PackedKvHead h = unpack_prompt_kv({&b, &b2}, b_pages, packed.span());
  EXPECT_EQ(h.first_token, 42);
  EXPECT_EQ(h.tokens, tokens);
  EXPECT_EQ(h.drafts, sent.drafts);
  EXPECT_EQ(h.first_top, sent.first_top);
  for (ModelRunner* r : {&b, &b2}) {
    const std::vector<Tensor*> b_pools = pools(*r);
    for (size_t p = 0; p < a_pools.size(); ++p) {
      const size_t rb = a_pools[p]->nbytes() / size_t(a_pools[p]->dim(0));
      for (int32_t t = 0; t < tokens; ++t) {
        const int64_t ra = int64_t(a_pages[size_t(t / 4)]) * 4 + t % 4, rb_row = int64_t(b_pages[size_t(t / 8)]) * 8 + t % 8;
        ASSERT_EQ(std::memcmp(static_cast<uint8_t*>(a_pools[p]->raw()) + size_t(ra) * rb,
                              static_cast<uint8_t*>(b_pools[p]->raw()) + size_t(rb_row) * rb, rb), 0)
            << (r == &b ? "rank 0" : "rank 1") << " pool " << p << " token " << t;
      }
    }
  }
  // Pools of another shape (FP8 rows here): refused, naming the difference.
  RunnerConfig f_cfg = b_cfg;
  f_cfg.kv_cache_dtype = DType::F8_E4M3;
  ModelRunner f(f_cfg, *model_);
  try {
    unpack_prompt_kv({&f}, b_pages, packed.span());
    FAIL() << "no error";
  } catch (const ds::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-cache-dtype"), std::string::npos) << e.what();
  }
  // A damaged header (a count beyond its bounds): refused, not read past the end.
  std::vector<uint8_t> bad(packed.span().begin(), packed.span().end());
  bad[24] = 0xff, bad[25] = 0xff;  // Header::drafts
  EXPECT_THROW(packed_kv_head(bad), ds::Error);
}
