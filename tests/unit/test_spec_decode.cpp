// Speculative decoding (runtime/spec_decode.h) on the CPU backend: the padded step shapes the GPU records,
// run op by op — a mixed verify step padded into the verify shape, the recorder's draft step against the
// plain one, and whole runs whose padded draft steps draft the same. Also the SpecDecodeTest fixture's
// statics (spec_decode_test_util.h). The engine's outputs: test_spec_decode_outputs.cpp; grammars:
// test_spec_decode_grammar.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "runtime/draft_recorder.h"
#include "runtime/spec_decode.h"
#include "runtime/step_recorder.h"
#include "spec_decode_test_util.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;
using namespace ds::spec_test;

namespace ds::spec_test {
backend::Backend* SpecDecodeTest::be_ = nullptr;
model::Model* SpecDecodeTest::golden_ = nullptr;
model::Model* SpecDecodeTest::bigram_ = nullptr;
model::Model* SpecDecodeTest::half_ = nullptr;
model::Model* SpecDecodeTest::bigram_fp8_head_ = nullptr;
}  // namespace ds::spec_test

// A target step that is not uniformly a verify step — fewer drafts for one request, a plain decode beside
// them — padded into the recorded verify shape (StepRecorder::verify_like; op by op here): the same logits
// rows, hidden states and KV as the step itself, and padding rows write nothing.
TEST_F(SpecDecodeTest, MixedVerifyStepPadsIntoTheVerifyShape) {
  const model::Model& m = *golden_;
  const int64_t H = m.config().hidden_size;
  backend::Backend& be = m.backend();
  Tensor hidden = be.alloc({8 * (kSteps + 1), H}, be.act_dtype());
  StepRecorder rec(m, 8, false, &hidden);
  rec.set_verify_tokens(kSteps + 1);
  model::KVCache a = m.make_cache(48, 4), b = m.make_cache(48, 4);
  std::mt19937 rng(9);
  auto tokens = [&](int n) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(int32_t(3 + rng() % uint32_t(m.config().vocab_size - 3)));
    return t;
  };
  auto pages = [](int s) {
    std::vector<int32_t> p(16);
    std::iota(p.begin(), p.end(), s * 16);
    return p;
  };
  const std::vector<int> lens = {7, 11, 4};
  model::ForwardBatch pre;
  for (int s = 0; s < 3; ++s) pre.seqs.push_back({tokens(lens[size_t(s)]), 0, pages(s), model::LogitsMode::Last});
  m.forward(pre, a);
  m.forward(pre, b);
  model::ForwardBatch step;  // 4 tokens verified, 2 tokens verified, 1 plain decode
  step.seqs.push_back({tokens(kSteps + 1), lens[0], pages(0), model::LogitsMode::All});
  step.seqs.push_back({tokens(2), lens[1], pages(1), model::LogitsMode::All});
  step.seqs.push_back({tokens(1), lens[2], pages(2), model::LogitsMode::Last});
  step.want_hidden = true;
  ASSERT_EQ(classify_step(step), ForwardMode::Mixed);
  model::ForwardOutput got = rec.forward_padded_eager(ForwardMode::Mixed, step, a);
  model::ForwardOutput want = m.forward(step, b);
  ASSERT_EQ(got.logits_row0, want.logits_row0);
  ASSERT_EQ(got.logits.shape(), want.logits.shape());
  ASSERT_EQ(got.logits.dim(0), kSteps + 1 + 2 + 1);
  auto rel = [](const Tensor& x, const Tensor& y) {
    double e = 0, mx = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      e = std::max(e, double(std::fabs(x.f32()[i] - y.f32()[i])));
      mx = std::max(mx, double(std::fabs(y.f32()[i])));
    }
    return e / std::max(mx, 1e-30);
  };
  EXPECT_LT(rel(got.logits, want.logits), 1e-5);
  ASSERT_EQ(got.hidden.shape(), want.hidden.shape());
  EXPECT_LT(rel(got.hidden, want.hidden), 1e-5);
  for (size_t l = 0; l < a.latent.size(); ++l) {  // every pool row: the real tokens' equal, nothing else written
    EXPECT_LT(rel(a.latent[l], b.latent[l]), 1e-5) << "latent pool of layer " << l;
    if (!a.index_k.empty()) {
      EXPECT_LT(rel(a.index_k[l], b.index_k[l]), 1e-5) << "indexer keys of layer " << l;
    }
  }
}

// The MTP layer's KV-only pass (Model::mtp_fill, what a draft step runs for every token but each drafting
// sequence's last) writes bit for bit the KV entries the whole layer (mtp_forward) writes for the same
// tokens and hidden states, and nothing else; it refuses logits rows and DP exchanges.
TEST_F(SpecDecodeTest, MtpFillWritesTheWholeLayersKvEntries) {
  const model::Model& m = *golden_;
  ASSERT_TRUE(m.config().has_indexer());
  const int64_t H = m.config().hidden_size;
  model::KVCache whole = m.make_cache(32, 4), fill = m.make_cache(32, 4), fresh = m.make_cache(32, 4);
  auto same = [](const Tensor& x, const Tensor& y) {
    return x.nbytes() == y.nbytes() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
  };
  auto pools = [](model::KVCache& c) {
    std::vector<Tensor*> p;
    for (auto& t : c.latent) p.push_back(&t);
    for (auto& t : c.index_k) p.push_back(&t);
    return p;
  };
  for (size_t i = 0; i < pools(whole).size(); ++i) {  // start from the same bytes, whatever alloc leaves
    std::memcpy(pools(fill)[i]->raw(), pools(whole)[i]->raw(), pools(whole)[i]->nbytes());
    std::memcpy(pools(fresh)[i]->raw(), pools(whole)[i]->raw(), pools(whole)[i]->nbytes());
  }
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  model::ForwardBatch b;
  model::MtpInput in;
  const std::vector<int> lens = {7, 5, 1};
  std::vector<int32_t> starts = {0, 3, 9};
  for (size_t s = 0; s < lens.size(); ++s) {
    std::vector<int32_t> t;
    for (int i = 0; i < lens[s]; ++i) t.push_back(int32_t(3 + rng() % uint32_t(m.config().vocab_size - 3)));
    in.next_tokens.insert(in.next_tokens.end(), t.begin(), t.end());
    std::vector<int32_t> pages(8);
    std::iota(pages.begin(), pages.end(), int32_t(s * 8));
    b.seqs.push_back({t, starts[s], pages, model::LogitsMode::None});
  }
  in.hidden = Tensor::empty({int64_t(in.next_tokens.size()), H}, DType::F32);
  for (int64_t i = 0; i < in.hidden.numel(); ++i) in.hidden.f32()[i] = nd(rng);
  m.mtp_forward(b, in, whole);
  m.mtp_fill(b, in, fill);
  const size_t mtp = size_t(m.config().num_hidden_layers);
  for (size_t l = 0; l < whole.latent.size(); ++l) {
    EXPECT_TRUE(same(whole.latent[l], fill.latent[l])) << "latent pool of layer " << l;
    EXPECT_TRUE(same(whole.index_k[l], fill.index_k[l])) << "indexer key pool of layer " << l;
    // The MTP layer's pools were written (the others were not).
    EXPECT_EQ(same(fill.latent[l], fresh.latent[l]), l != mtp) << "layer " << l;
    EXPECT_EQ(same(fill.index_k[l], fresh.index_k[l]), l != mtp) << "layer " << l;
  }
  model::ForwardBatch with_logits = b;
  with_logits.seqs[0].logits = model::LogitsMode::Last;
  EXPECT_THROW(m.mtp_fill(with_logits, in, fill), Error);
  model::ForwardBatch with_dp = b;
  with_dp.dp_tokens = {int32_t(in.next_tokens.size())};
  EXPECT_THROW(m.mtp_fill(with_dp, in, fill), Error);
}

// The recorder's draft step (padded, op by op here) against the plain one, step for step on two runners of
// the random-MTP golden model: a prompt's draft step (its KV-only part, then the padded passes) and a draft
// step after a verify with 1, 2 and 4 confirmed tokens; the drafts themselves must be the same.
TEST_F(SpecDecodeTest, PaddedDraftStepEqualsPlainDraftStep) {
  const model::Model& m = *golden_;
  auto make = [&](bool padded) {
    RunnerConfig rc = runner();
    rc.num_pages = 64;
    rc.page_size = 4;
    rc.cuda_graph_max_bs = 4;  // a batch of 3 pads to 4
    rc.draft_padded_eager = padded;
    return std::make_unique<ModelRunner>(rc, m);
  };
  auto padded = make(true), plain = make(false);
  ASSERT_TRUE(padded->draft_recorder());
  ASSERT_FALSE(plain->draft_recorder());
  std::mt19937 rng(5);
  const std::vector<int> lens = {9, 5, 13};
  std::vector<std::vector<int32_t>> prompts;
  for (int len : lens) {
    std::vector<int32_t> p;
    for (int i = 0; i < len; ++i) p.push_back(int32_t(3 + rng() % uint32_t(m.config().vocab_size - 3)));
    prompts.push_back(p);
  }
  auto pages = [](size_t s) {
    std::vector<int32_t> p(16);
    std::iota(p.begin(), p.end(), int32_t(s * 16));
    return p;
  };
  GreedySampling greedy;
  auto both = [&](const StepInput& in) {
    StepOutput a = padded->run(in), b = plain->run(in);
    return std::make_pair(std::move(a), std::move(b));
  };
  // Prefill, keeping the hidden states.
  StepInput pre;
  pre.keep_hidden = true;
  for (size_t s = 0; s < prompts.size(); ++s) pre.batch.seqs.push_back({prompts[s], 0, pages(s), model::LogitsMode::Last});
  pre.sample = greedy.slots(prompts.size());
  auto [pa, pb] = both(pre);
  // The prompt's draft step: position p reads the hidden state at p and the token at p + 1.
  StepInput d1;
  d1.mode = ForwardMode::DraftExtend;
  int32_t row = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    std::vector<int32_t> next(prompts[s].begin() + 1, prompts[s].end());
    next.push_back(pa.tokens.drawn[s].token);
    d1.batch.seqs.push_back({next, 0, pages(s), model::LogitsMode::Last});
    for (size_t i = 0; i < next.size(); ++i) d1.hidden_rows.push_back(row++);
  }
  auto [da, db] = both(d1);
  ASSERT_EQ(da.drafts.size(), prompts.size());
  for (size_t s = 0; s < prompts.size(); ++s) {
    EXPECT_EQ(da.drafts[s], db.drafts[s]) << "prompt draft, sequence " << s;
    EXPECT_EQ(da.drafts[s].size(), size_t(kSteps));
  }
  // Verify the last token + the drafts, then draft after 1, 2 and 4 confirmed tokens.
  StepInput v;
  v.mode = ForwardMode::TargetVerify;
  v.keep_hidden = v.sample_per_row = true;
  for (size_t s = 0; s < prompts.size(); ++s) {
    std::vector<int32_t> t = {pa.tokens.drawn[s].token};
    t.insert(t.end(), db.drafts[s].begin(), db.drafts[s].end());
    v.batch.seqs.push_back({t, lens[s], pages(s), model::LogitsMode::All});
  }
  v.sample = greedy.slots(prompts.size() * (kSteps + 1));
  auto [va, vb] = both(v);
  StepInput d2;
  d2.mode = ForwardMode::DraftExtend;
  const std::vector<int32_t> confirmed = {1, 2, 4};
  for (size_t s = 0; s < prompts.size(); ++s) {
    std::vector<int32_t> next;
    for (int32_t k = 0; k < confirmed[s]; ++k) next.push_back(vb.tokens.drawn[s * (kSteps + 1) + k].token);
    d2.batch.seqs.push_back({next, lens[s], pages(s), model::LogitsMode::Last});
    for (int32_t k = 0; k < confirmed[s]; ++k) d2.hidden_rows.push_back(int32_t(s) * (kSteps + 1) + k);
  }
  auto [ea, eb] = both(d2);
  for (size_t s = 0; s < prompts.size(); ++s) EXPECT_EQ(ea.drafts[s], eb.drafts[s]) << "verify draft, sequence " << s;
  EXPECT_EQ(padded->draft_recorder()->stats().padded_eager, 2);
  EXPECT_EQ(padded->draft_recorder()->stats().with_fill, 1);
}

// The draft step as it is recorded on the GPU (runtime/draft_recorder.h: confirmed tokens padded to S + 1
// rows, a batch bucket of padding sequences, chained passes fed from device buffers), run op by op here:
// every request's drafts are those of the plain draft step, so its verify steps, drafts and accepted
// tokens are the same counts; on a draft that is right half the time and on a random one, with requests
// arriving while others verify (their prompt chunks' KV-only MTP part runs op by op before the passes).
TEST_F(SpecDecodeTest, PaddedDraftStepsDraftTheSame) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back(greedy("p" + std::to_string(i), prompt_of(i, 6 + 5 * i), 12 + 9 * i));
  for (const model::Model* m : {half_, golden_}) {
    std::map<std::string, Collector::Result> got[2];
    int64_t padded = 0, filled = 0;
    for (int mode = 0; mode < 2; ++mode) {
      RunnerConfig rc = runner();
      rc.num_pages = 1024 / 4;
      rc.page_size = 4;
      rc.cuda_graph_max_bs = 8;  // buckets 1, 2, 4, 8: five requests pad to 8
      rc.draft_padded_eager = mode == 1;
      ModelRunner r(rc, *m);
      ASSERT_EQ(r.draft_recorder() != nullptr, mode == 1);
      auto e = make_engine(config(), {&r}, tok);
      Collector c(std::chrono::seconds(120));
      for (const auto& q : reqs) {  // later ones arrive while earlier ones verify: prompt chunks in draft steps
        e->submit(q, c.sink(q.id));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      for (const auto& q : reqs) got[mode][q.id] = c.wait(q.id);
      e->shutdown();
      if (mode == 1) padded = r.draft_recorder()->stats().padded_eager, filled = r.draft_recorder()->stats().with_fill;
    }
    EXPECT_GT(padded, 10) << "the padded draft steps did not run";
    EXPECT_GT(filled, 0) << "no draft step had a KV-only part";
    int64_t verified = 0;
    for (const auto& q : reqs) {
      const auto &a = got[0][q.id], &b = got[1][q.id];
      EXPECT_EQ(a.tokens, b.tokens) << q.id;
      EXPECT_EQ(a.last.spec_verify_ct, b.last.spec_verify_ct) << q.id;
      EXPECT_EQ(a.last.spec_draft_tokens, b.last.spec_draft_tokens) << q.id;
      EXPECT_EQ(a.last.spec_accept_tokens, b.last.spec_accept_tokens) << q.id;
      verified += a.last.spec_verify_ct;
    }
    EXPECT_GT(verified, 20);
  }
}

namespace ds::runtime {
namespace {
// The pause rule alone: a window of kSpecWindow verify steps below the bound pauses speculation; each try
// that fails again pauses twice as long, up to kSpecPauseMaxSteps; a window that meets the bound resets the
// length; a bound of 0 never pauses. Over a long run at zero acceptance the verify steps are a small share.
TEST(SpecPauseRule, BacksOffWhileTriesFailAndResetsOnSuccess) {
  SpecPause p;
  int64_t step = 0;
  // Runs verify steps (1 token per request: nothing accepted) until a pause starts; returns its length.
  // (After a pause the window starts empty: the kSpecWindow-th step pauses; after good steps the window
  // still holds them, and fewer failures bring its mean below the bound.)
  auto fail_until_pause = [&](bool fresh) {
    for (size_t k = 0; k < kSpecWindow; ++k, ++step) {
      EXPECT_FALSE(p.paused(step));
      const bool paused = p.record(step, 4, 4, 1.5);
      if (fresh) {
        EXPECT_EQ(paused, k + 1 == kSpecWindow) << "step " << step;
      }
      if (paused) {
        const int64_t len = p.last_pause();
        EXPECT_TRUE(p.paused(step + 1));
        EXPECT_TRUE(p.paused(step + len));
        EXPECT_FALSE(p.paused(step + len + 1));
        step += len + 1;
        return len;
      }
    }
    return int64_t(0);
  };
  std::vector<int64_t> lens;
  for (int k = 0; k < 6; ++k) lens.push_back(fail_until_pause(true));
  EXPECT_EQ(lens, (std::vector<int64_t>{256, 512, 1024, 2048, 2048, 2048}));
  // A window that meets the bound (4 tokens per request): no pause, and the next failure starts at 256.
  for (size_t k = 0; k < kSpecWindow; ++k, ++step) EXPECT_FALSE(p.record(step, 16, 4, 1.5));
  EXPECT_EQ(fail_until_pause(false), 256);
  EXPECT_EQ(p.pauses(), 7);
  // Bound 0: never.
  SpecPause never;
  for (int64_t s = 0; s < 100; ++s) EXPECT_FALSE(never.record(s, 1, 1, 0.0));

  // Zero acceptance for 100,000 steps: the share of steps that verify drafts.
  SpecPause z;
  int64_t verify_steps = 0;
  for (int64_t s = 0; s < 100000; ++s) {
    if (z.paused(s)) continue;
    ++verify_steps;
    z.record(s, 1, 1, 1.5);
  }
  EXPECT_LT(double(verify_steps) / 100000, 0.005) << verify_steps << " verify steps";
}
}  // namespace
}  // namespace ds::runtime
