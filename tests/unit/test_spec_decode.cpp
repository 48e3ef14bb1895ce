// Speculative decoding (runtime/spec_decode.h) in the engine on the CPU backend: greedy outputs identical
// to plain decoding whatever the drafts are worth (a random MTP layer: acceptance ~0; a bigram draft on a
// bigram model: ~1; in between), in batches, with retraction, prefix hits, stops inside an accepted run,
// aborts; sampled outputs with plain decoding's distribution (chi-square) and, with device draws, the
// same tokens for a seed.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "engine_test_util.h"
#include "grammar/grammar_compiler.h"
#include "host_sampling_backend.h"
#include "model/make_model.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/draft_recorder.h"
#include "runtime/model_runner.h"
#include "runtime/spec_decode.h"
#include "runtime/step_recorder.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;

namespace {

constexpr int32_t kSteps = 3;

using ds::testing::Collector;
using ds::testing::greedy;
using ds::testing::prompt_of;

// Tiny checkpoints made once per run: the golden one has a random MTP layer; the bigram ones a draft that
// agrees by construction (make_model's bigram_mtp) with main layers scaled by 0 (a bigram model) or 0.5.
std::string bigram_model_dir(float scale) {
  return (std::filesystem::temp_directory_path() /
          fmt::format("dsserve-spec-bigram-{}-{}", int(scale * 100), ::getpid()))
      .string();
}
std::string bigram_model(float scale) {
  const std::string dir = bigram_model_dir(scale);
  if (!std::filesystem::exists(dir + "/config.json")) {
    model::MakeModelOptions o;
    o.preset = "tiny";
    o.seed = 7;
    o.bigram_mtp = true;
    o.layer_output_scale = scale;
    model::make_model(o, dir);
  }
  return dir;
}

EngineConfig config(int64_t total_tokens = 1024, int32_t spec = kSteps) {
  EngineConfig c;
  c.page_size = 4;
  c.max_total_tokens = total_tokens;
  c.context_length = 160;
  c.eos_token_ids = {1};
  c.speculative_num_steps = spec;
  c.speculative_min_accept_length = 0;  // every request speculates to its end (the switch-off has its own test)
  return c;
}

RunnerConfig runner(int32_t spec = kSteps) {
  RunnerConfig rc;
  rc.draft_steps = spec;
  return rc;
}

struct Outputs {
  std::map<std::string, Collector::Result> by_id;
  EngineStats stats;
};

// Runs the requests through an engine (speculating or not), all submitted at once or staggered (later
// ones arrive while earlier ones decode: mixed prefill + verify steps).
Outputs run_all(const model::Model& m, const tok::Tokenizer& tok, const std::vector<GenerateRequest>& reqs, bool spec,
                int64_t pool = 1024, bool staggered = false,
                int32_t grammar_ahead = EngineConfig{}.grammar_ahead_min_requests) {
  EngineConfig cfg = config(pool, spec ? kSteps : 0);
  cfg.grammar_ahead_min_requests = grammar_ahead;
  auto e = make_engine(cfg, m, tok, runner(spec ? kSteps : 0));
  Collector c(std::chrono::seconds(120));
  for (size_t i = 0; i < reqs.size(); ++i) {
    e->submit(reqs[i], c.sink(reqs[i].id));
    if (staggered && i % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(15));
  }
  Outputs o;
  for (const auto& r : reqs) o.by_id[r.id] = c.wait(r.id);
  o.stats = e->stats();
  e->shutdown();
  return o;
}

class SpecDecodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    be_ = backend::make_cpu_backend(0).release();
    golden_ = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be_).release();
    bigram_ = model::Model::load(bigram_model(0.0f), *be_).release();
    half_ = model::Model::load(bigram_model(0.5f), *be_).release();
    model::ModelOptions fp8_head;
    fp8_head.draft_head = model::DraftHead::Fp8;
    bigram_fp8_head_ = model::Model::load(bigram_model(0.0f), *be_, fp8_head).release();
  }
  static void TearDownTestSuite() {
    for (float scale : {0.0f, 0.5f}) std::filesystem::remove_all(bigram_model_dir(scale));
  }
  static backend::Backend* be_;
  static model::Model *golden_, *bigram_, *half_;
  static model::Model* bigram_fp8_head_;  // the bigram model drafting through an FP8 copy of its head
};
backend::Backend* SpecDecodeTest::be_ = nullptr;
model::Model* SpecDecodeTest::golden_ = nullptr;
model::Model* SpecDecodeTest::bigram_ = nullptr;
model::Model* SpecDecodeTest::half_ = nullptr;
model::Model* SpecDecodeTest::bigram_fp8_head_ = nullptr;

}  // namespace

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

// Greedy: the same tokens as plain decoding on three drafts of different worth, with requests of
// different lengths batched, arriving while others decode, and sharing a prompt (n > 1).
TEST_F(SpecDecodeTest, GreedyOutputsEqualPlainDecoding) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy("r" + std::to_string(i), prompt_of(i, 5 + 7 * i), 9 + 11 * i));
  reqs.push_back(greedy("twin", prompt_of(2, 19), 40));  // r2's prompt again: a prefix hit, then its own decode
  struct Case {
    const char* name;
    model::Model* m;
    double min_accept, max_accept;  // tokens per verify step
  } cases[] = {{"random draft", golden_, 1.0, 1.3},
               {"bigram draft", bigram_, 3.5, 4.0},
               {"half", half_, 1.2, 3.9},
               {"bigram draft, FP8 draft head", bigram_fp8_head_, 3.5, 4.0}};
  for (const auto& k : cases) {
    Outputs plain = run_all(*k.m, tok, reqs, false);
    Outputs spec = run_all(*k.m, tok, reqs, true, 1024, true);
    for (const auto& r : reqs) {
      EXPECT_EQ(spec.by_id[r.id].tokens, plain.by_id[r.id].tokens) << k.name << " " << r.id;
      EXPECT_EQ(spec.by_id[r.id].text, plain.by_id[r.id].text) << k.name << " " << r.id;
      EXPECT_EQ(spec.by_id[r.id].last.finish_reason, FinishReason::Length) << k.name << " " << r.id;
      EXPECT_EQ(spec.by_id[r.id].last.completion_tokens, r.max_new_tokens) << k.name << " " << r.id;
    }
    const double accept = spec.stats.spec_accept_length();
    EXPECT_GE(accept, k.min_accept) << k.name;
    EXPECT_LE(accept, k.max_accept) << k.name;
    EXPECT_EQ(plain.stats.spec_verify_total, 0) << k.name;
    EXPECT_EQ(spec.stats.generation_tokens_total, plain.stats.generation_tokens_total) << k.name;
    EXPECT_EQ(spec.stats.used_pages, spec.stats.cached_pages) << k.name << ": only the prefix cache holds pages";
    // Fewer steps than tokens once drafts are accepted.
    if (k.min_accept > 2) {
      EXPECT_LT(spec.stats.steps_total * 2, plain.stats.steps_total) << k.name;
    }
    const auto& m = spec.by_id["r5"].last;
    EXPECT_GT(m.spec_verify_ct, 0) << k.name;
    EXPECT_EQ(m.spec_accept_tokens + 1, m.completion_tokens) << k.name << ": every decode step's tokens counted";
    std::printf("%s: accept length %.2f, %lld steps (plain %lld)\n", k.name, accept, (long long)spec.stats.steps_total,
                (long long)plain.stats.steps_total);
  }
}

// Retraction under KV pressure: drafts are dropped first, then requests retracted and recomputed (the MTP
// layer's KV with them); nothing changes in the outputs and no page leaks.
TEST_F(SpecDecodeTest, RetractionUnderPressureChangesNothing) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(greedy("p" + std::to_string(i), prompt_of(i + 10, 5), 24));
  for (model::Model* m : {bigram_, half_}) {
    Outputs plain = run_all(*m, tok, reqs, false, 1024);
    Outputs spec = run_all(*m, tok, reqs, true, 64);
    for (const auto& r : reqs) EXPECT_EQ(spec.by_id[r.id].tokens, plain.by_id[r.id].tokens) << r.id;
    EXPECT_GT(spec.stats.retractions_total, 0);
    EXPECT_EQ(spec.stats.used_pages, spec.stats.cached_pages);
    EXPECT_EQ(spec.stats.running, 0);
  }
}

// Stops inside an accepted run end the request at the right token: a stop token id, a stop string,
// max_new_tokens that is not a multiple of the tokens per step; EOS (not ignored).
TEST_F(SpecDecodeTest, StopsInsideAnAcceptedRun) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  const auto base = greedy("base", prompt_of(3, 8), 40);
  Outputs full = run_all(*bigram_, tok, {base}, false);
  const std::vector<int32_t>& seq = full.by_id["base"].tokens;
  ASSERT_EQ(seq.size(), 40u);
  std::vector<GenerateRequest> reqs;
  auto stop_id = base;
  stop_id.id = "stop_id";
  stop_id.stop_token_ids = {seq[13]};  // the first occurrence of it ends the output
  reqs.push_back(stop_id);
  auto len = base;
  len.id = "len";
  len.max_new_tokens = 7;
  reqs.push_back(len);
  auto eos = base;
  eos.id = "eos";
  eos.sampling.ignore_eos = false;
  reqs.push_back(eos);
  auto str = base;
  str.id = "str";
  const std::string text = tok.decode(std::vector<int32_t>(seq.begin() + 10, seq.begin() + 12), true);
  if (!text.empty()) str.stop = {text};
  reqs.push_back(str);
  Outputs plain = run_all(*bigram_, tok, reqs, false);
  Outputs spec = run_all(*bigram_, tok, reqs, true);
  for (const auto& r : reqs) {
    const auto& a = spec.by_id[r.id];
    const auto& b = plain.by_id[r.id];
    EXPECT_EQ(a.tokens, b.tokens) << r.id;
    EXPECT_EQ(a.text, b.text) << r.id;
    EXPECT_EQ(a.last.finish_reason, b.last.finish_reason) << r.id;
    EXPECT_EQ(a.last.matched_stop_token, b.last.matched_stop_token) << r.id;
    EXPECT_EQ(a.last.matched_stop_str, b.last.matched_stop_str) << r.id;
  }
  const size_t first = size_t(std::find(seq.begin(), seq.end(), seq[13]) - seq.begin());
  EXPECT_EQ(spec.by_id["stop_id"].tokens.size(), first + 1);
  EXPECT_EQ(spec.by_id["len"].tokens.size(), 7u);
}

// An abort while a request speculates ends it and frees its pages; the others go on unchanged.
TEST_F(SpecDecodeTest, AbortMidDraftFreesEverything) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto e = make_engine(config(), *bigram_, tok, runner());
  Collector c(std::chrono::seconds(120));
  auto keep = greedy("keep", prompt_of(4, 9), 120);
  auto gone = greedy("gone", prompt_of(5, 9), 140);
  e->submit(keep, c.sink("keep"));
  e->submit(gone, c.sink("gone"));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  e->abort("gone");
  auto g = c.wait("gone");
  EXPECT_EQ(g.last.finish_reason, FinishReason::Abort);
  auto k = c.wait("keep");
  e->shutdown();
  Outputs plain = run_all(*bigram_, tok, {keep}, false);
  EXPECT_EQ(k.tokens, plain.by_id["keep"].tokens);
  const auto s = e->stats();
  EXPECT_EQ(s.used_pages, s.cached_pages);
}

// Requests whose draws a rejected draft would disturb (penalties, forced continuations) decode plainly
// beside speculating ones.
TEST_F(SpecDecodeTest, PenaltiesDecodePlainlyBesideSpeculation) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto pen = greedy("pen", prompt_of(6, 7), 20);
  pen.sampling.frequency_penalty = 0.7f;
  auto free = greedy("free", prompt_of(7, 7), 20);
  Outputs plain = run_all(*bigram_, tok, {pen, free}, false);
  Outputs spec = run_all(*bigram_, tok, {pen, free}, true);
  EXPECT_EQ(spec.by_id["pen"].tokens, plain.by_id["pen"].tokens);
  EXPECT_EQ(spec.by_id["free"].tokens, plain.by_id["free"].tokens);
  EXPECT_EQ(spec.by_id["pen"].last.spec_verify_ct, 0);
  EXPECT_GT(spec.by_id["free"].last.spec_verify_ct, 0);
}

// Device draws are keyed on (seed, output index): a seeded sampled request gives the same tokens with and
// without speculation (each emitted token is the draw plain decoding makes at that index).
TEST_F(SpecDecodeTest, SeededDeviceDrawsGiveTheSameTokens) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  fakes::HostSamplingBackend hb;
  auto m = model::Model::load(bigram_model(0.0f), hb);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 4; ++i) {
    auto r = greedy("s" + std::to_string(i), prompt_of(i + 30, 6), 30);
    r.sampling.temperature = 0.15f + 0.1f * float(i);  // the tiny model's logits are flat: sharpen them
    r.sampling.top_p = i == 1 ? 0.8f : 1.0f;
    r.sampling.top_k = i == 2 ? 20 : -1;
    r.sampling.min_p = i == 3 ? 0.05f : 0.0f;
    r.sampling.seed = 100 + i;
    reqs.push_back(r);
  }
  Outputs plain = run_all(*m, tok, reqs, false);
  Outputs spec = run_all(*m, tok, reqs, true);
  for (const auto& r : reqs) EXPECT_EQ(spec.by_id[r.id].tokens, plain.by_id[r.id].tokens) << r.id;
  EXPECT_GT(spec.stats.spec_accept_length(), 1.2) << "some drafts should be accepted at these temperatures";
}

// Host draws (each verify row its own generator): the distribution of the output equals plain decoding's.
// Two-sample chi-square test of homogeneity on the third output token, at significance 0.001 (bins with
// fewer than 10 expected draws merged), for two temperatures and a top-p. (The test cannot fail by
// chance more than once in a thousand runs per setting.)
TEST_F(SpecDecodeTest, SampledDistributionMatchesPlainDecoding) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  struct Setting {
    float temperature, top_p;
  } settings[] = {{0.25f, 1.0f}, {0.4f, 0.9f}};  // the tiny model's logits are flat: sharpened
  constexpr int kDraws = 1500;
  for (const auto& st : settings) {
    std::vector<GenerateRequest> reqs;
    for (int i = 0; i < kDraws; ++i) {
      auto r = greedy("d" + std::to_string(i), prompt_of(9, 4), 3);
      r.sampling.temperature = st.temperature;
      r.sampling.top_p = st.top_p;
      r.sampling.seed = 5000 + i;  // host draws: seeds the request's generator
      reqs.push_back(r);
    }
    std::map<int32_t, std::array<double, 2>> counts;
    for (int arm = 0; arm < 2; ++arm) {
      auto e = make_engine(config(1 << 16, arm ? kSteps : 0), *bigram_, tok, [&] {
        RunnerConfig rc = runner(arm ? kSteps : 0);
        rc.sample_on_device = false;
        return rc;
      }());
      Collector c(std::chrono::seconds(120));
      for (auto r : reqs) {
        r.sampling.seed = *r.sampling.seed + uint64_t(arm) * 1000003;  // independent arms
        e->submit(r, c.sink(r.id));
      }
      for (const auto& r : reqs) {
        auto out = c.wait(r.id);
        ASSERT_EQ(out.tokens.size(), 3u);
        counts[out.tokens[2]][size_t(arm)] += 1;
      }
      if (arm) {
        EXPECT_GT(e->stats().spec_accept_length(), 1.1);
      }
      e->shutdown();
    }
    // Merge sparse bins (expected count per arm < 10) into one.
    std::vector<std::array<double, 2>> bins;
    std::array<double, 2> other{0, 0};
    for (const auto& [tok_id, n] : counts) {
      if ((n[0] + n[1]) / 2 < 10) other[0] += n[0], other[1] += n[1];
      else bins.push_back(n);
    }
    if (other[0] + other[1] > 0) bins.push_back(other);
    ASSERT_GE(bins.size(), 2u) << "the test needs a spread-out distribution";
    double chi2 = 0;
    for (const auto& b : bins) {
      const double row = b[0] + b[1];
      for (int a = 0; a < 2; ++a) {
        const double expected = row * kDraws / (2.0 * kDraws);
        chi2 += (b[size_t(a)] - expected) * (b[size_t(a)] - expected) / expected;
      }
    }
    const double df = double(bins.size() - 1);
    // Wilson-Hilferty: the 0.999 quantile of chi-square with df degrees of freedom (z = 3.0902).
    const double crit = df * std::pow(1 - 2 / (9 * df) + 3.0902 * std::sqrt(2 / (9 * df)), 3);
    EXPECT_LT(chi2, crit) << "temperature " << st.temperature << " top_p " << st.top_p << ": " << bins.size()
                          << " bins";
    std::printf("T %.1f top_p %.1f: chi2 %.1f (df %.0f, critical %.1f at 0.001)\n", st.temperature, st.top_p, chi2,
                df, crit);
  }
}

// The pause rule: with a random draft (almost never accepted) the batch stops speculating after the window
// of verify steps, so zero acceptance costs a few steps, not the whole request; an agreeing draft never
// pauses.
TEST_F(SpecDecodeTest, SpeculationPausesWhenDraftsFail) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(greedy("w" + std::to_string(i), prompt_of(i + 40, 6), 40));
  for (model::Model* m : {golden_, bigram_}) {
    Outputs plain = run_all(*m, tok, reqs, false);
    EngineConfig ec = config(1024, kSteps);
    ec.speculative_min_accept_length = 1.5;
    auto e = make_engine(ec, *m, tok, runner());
    Collector c(std::chrono::seconds(120));
    for (const auto& r : reqs) e->submit(r, c.sink(r.id));
    for (const auto& r : reqs) {
      auto got = c.wait(r.id);
      EXPECT_EQ(got.tokens, plain.by_id[r.id].tokens) << r.id;
      if (m == golden_) {
        EXPECT_LE(got.last.spec_draft_tokens, int32_t(kSpecWindow) * kSteps) << r.id << ": paused after the window";
      } else {
        EXPECT_GT(double(got.last.spec_accept_tokens) / got.last.spec_verify_ct, 3.0) << r.id << ": never paused";
      }
    }
    const EngineStats s = e->stats();
    EXPECT_EQ(s.spec_pauses_total, m == golden_ ? 1 : 0);
    e->shutdown();
  }
}

// Grammars speculate: each verify row is sampled under the mask after its draft prefix, drafts the grammar
// refuses are not verified, the matcher follows the emitted tokens. Greedy outputs equal plain decoding's
// (with jump-forward on in both), under a JSON schema (free whitespace, and fixed keys), a regex, and a
// schema that applies only after a trigger token; seeded device draws give the same tokens too (the masked
// distribution of every row is plain decoding's). The grammar's vocabulary: id 2 + b is byte b, then
// pieces; the stop token is the EOS id 1.
TEST_F(SpecDecodeTest, GrammarRequestsSpeculateWithPlainDecodingsOutputs) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"{\"", "\":", "\",", "\"}", "true", "false", "12", "ab", "xyz", " \"", ", \"", "-7"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)] + std::string(i / std::size(pieces), 'q');
  auto vocab = grammar::TokenTable::from_bytes(std::move(t), {1});
  grammar::GrammarCompiler free_ws(vocab);
  grammar::JsonGrammarOptions fixed;
  fixed.fixed_separators = true;
  grammar::GrammarCompiler fixed_ws(vocab, 16, fixed);
  const std::string schema = R"({"type":"object","properties":{"note":{"type":"string","maxLength":40},
    "n":{"type":"integer"},"ok":{"type":"boolean"}},"required":["note","n","ok"],"additionalProperties":false})";
  auto json = free_ws.compile({grammar::GrammarKind::JsonSchema, schema});
  auto keys = fixed_ws.compile({grammar::GrammarKind::JsonSchema, schema});
  auto regex = free_ws.compile({grammar::GrammarKind::Regex, R"(([a-z]{1,6} ){2,8}(yes|no)\.)"});
  // "after": the fixed-key schema once a trigger token ends the output — one that plain decoding of this
  // model writes early without a grammar (the rows before and after it differ in being constrained).
  auto requests = [&](model::Model& m) {
    const int32_t trigger = run_all(m, tok, {greedy("t", prompt_of(60, 6), 8)}, false).by_id["t"].tokens[4];
    std::vector<GenerateRequest> reqs;
    int k = 0;
    for (const auto& [name, g] : std::vector<std::pair<std::string, std::shared_ptr<const grammar::CompiledGrammar>>>{
             {"json", json}, {"keys", keys}, {"regex", regex}, {"after", keys}})
      for (int i = 0; i < 2; ++i, ++k) {
        auto r = greedy(name + std::to_string(i), prompt_of(name == "after" ? 60 : 50 + k, 6), 90);
        r.sampling.ignore_eos = false;
        r.grammar.grammar = g;
        if (name == "after") r.grammar.trigger = {trigger};
        reqs.push_back(r);
      }
    return reqs;
  };
  for (model::Model* m : {bigram_, half_}) {
    const std::vector<GenerateRequest> reqs = requests(*m);
    Outputs plain = run_all(*m, tok, reqs, false);
    Outputs spec = run_all(*m, tok, reqs, true, 1024, true);
    int64_t accepted = 0;
    for (const auto& r : reqs) {
      const auto& a = spec.by_id[r.id];
      EXPECT_EQ(a.tokens, plain.by_id[r.id].tokens) << r.id;
      EXPECT_EQ(a.last.finish_reason, plain.by_id[r.id].last.finish_reason) << r.id;
      EXPECT_NE(a.last.finish_reason, FinishReason::Error) << r.id << ": " << a.last.error;
      EXPECT_GT(a.last.spec_verify_ct, 0) << r.id << ": it speculated";
      accepted += a.last.spec_accept_tokens - a.last.spec_verify_ct;
      std::string text;
      for (int32_t id : a.tokens) text += vocab->bytes(id);
      if (a.last.finish_reason == FinishReason::Stop) {
        std::string doc;  // after the trigger, without the EOS
        auto from = r.grammar.trigger.empty() ? a.tokens.begin()
                                              : std::find(a.tokens.begin(), a.tokens.end(), r.grammar.trigger[0]) + 1;
        for (auto it = from; it + 1 < a.tokens.end(); ++it) doc += vocab->bytes(*it);
        EXPECT_TRUE(grammar::grammar_matches(r.grammar.grammar, doc)) << r.id << ": " << doc;
      }
      std::printf("%s: %zu tokens, %d verify steps, %d drafts accepted: %s\n", r.id.c_str(), a.tokens.size(),
                  a.last.spec_verify_ct, a.last.spec_accept_tokens - a.last.spec_verify_ct, text.c_str());
    }
    EXPECT_GT(accepted, int64_t(reqs.size())) << "drafts must be accepted under the masks for the test to mean much";
    EXPECT_EQ(spec.stats.used_pages, spec.stats.cached_pages);
  }
  // Seeded device draws: the same sampled tokens with and without speculation.
  fakes::HostSamplingBackend hb;
  auto dm = model::Model::load(bigram_model(0.0f), hb);
  std::vector<GenerateRequest> sampled;
  const std::vector<GenerateRequest> reqs = requests(*dm);
  for (size_t i = 0; i < reqs.size(); i += 2) {
    auto r = reqs[i];
    r.id = "sampled_" + r.id;
    r.sampling.temperature = 0.3f;
    r.sampling.seed = 900 + i;
    sampled.push_back(r);
  }
  Outputs plain = run_all(*dm, tok, sampled, false);
  Outputs spec = run_all(*dm, tok, sampled, true);
  for (const auto& r : sampled) EXPECT_EQ(spec.by_id[r.id].tokens, plain.by_id[r.id].tokens) << r.id;
}

// The grammar walk ahead of the outputs (runtime/grammar_ahead.h) through verify chains: the same outputs
// whether every step's grammar work runs on the mask pool or on the engine thread, with max_tokens and stop
// ids ending requests inside an accepted run and inside or right before a forced run.
TEST_F(SpecDecodeTest, GrammarWalkAheadGivesTheSameOutputs) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"{\"", "\":", "\",", "\"}", "true", "false", "12", "ab", "xyz", " \"", ", \"", "-7"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)] + std::string(i / std::size(pieces), 'q');
  auto vocab = grammar::TokenTable::from_bytes(std::move(t), {1});
  grammar::JsonGrammarOptions fixed;
  fixed.fixed_separators = true;
  grammar::GrammarCompiler compiler(vocab, 16, fixed);
  auto keys = compiler.compile({grammar::GrammarKind::JsonSchema,
                                R"({"type":"object","properties":{"note":{"type":"string","maxLength":40},"n":{"type":"integer"},
                                    "ok":{"type":"boolean"}},"required":["note","n","ok"],"additionalProperties":false})"});
  auto regex = compiler.compile({grammar::GrammarKind::Regex, R"(([a-z]{1,6} ){2,8}(yes|no)\.)"});
  std::vector<GenerateRequest> reqs;
  for (const auto& [name, g] : std::vector<std::pair<std::string, std::shared_ptr<const grammar::CompiledGrammar>>>{
           {"keys", keys}, {"regex", regex}}) {
    auto full = greedy(name, prompt_of(name == "keys" ? 50 : 52, 6), 90);
    full.sampling.ignore_eos = false;
    full.grammar.grammar = g;
    const std::vector<int32_t> seq = run_all(*bigram_, tok, {full}, true).by_id[name].tokens;
    ASSERT_GT(seq.size(), 8u) << name;
    reqs.push_back(full);
    for (size_t k = 1; k < seq.size(); k += 2) {
      auto len = full;
      len.id = name + "_len" + std::to_string(k);
      len.max_new_tokens = int32_t(k);
      reqs.push_back(len);
      auto stop = full;
      stop.id = name + "_stop" + std::to_string(k);
      stop.stop_token_ids = {seq[k + 1 < seq.size() ? k + 1 : k]};
      stop.sampling.ignore_eos = k % 2 == 0;
      reqs.push_back(stop);
    }
  }
  for (model::Model* m : {bigram_, half_}) {
    Outputs serial = run_all(*m, tok, reqs, true, 32768, false, 1 << 30);
    Outputs ahead = run_all(*m, tok, reqs, true, 32768, false, 1);
    for (const auto& r : reqs) {
      const auto& a = ahead.by_id[r.id];
      const auto& b = serial.by_id[r.id];
      EXPECT_EQ(a.tokens, b.tokens) << r.id;
      EXPECT_EQ(a.text, b.text) << r.id;
      EXPECT_EQ(a.last.finish_reason, b.last.finish_reason) << r.id;
      EXPECT_EQ(a.last.matched_stop_token, b.last.matched_stop_token) << r.id;
      EXPECT_EQ(a.last.jump_forward_tokens, b.last.jump_forward_tokens) << r.id;
      EXPECT_EQ(a.last.spec_accept_tokens, b.last.spec_accept_tokens) << r.id;
      EXPECT_EQ(a.last.spec_verify_ct, b.last.spec_verify_ct) << r.id;
      EXPECT_NE(a.last.finish_reason, FinishReason::Error) << r.id << ": " << a.last.error;
    }
    if (m == bigram_) {
      EXPECT_GT(ahead.stats.spec_tokens_total, ahead.stats.spec_verify_total) << "drafts accepted";
    }
    EXPECT_GT(ahead.stats.jump_forward_tokens_total, 0);
    EXPECT_EQ(ahead.stats.used_pages, ahead.stats.cached_pages);
  }
}
