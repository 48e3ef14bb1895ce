// Speculative decoding (runtime/spec_decode.h) in the engine on the CPU backend: greedy outputs identical
// to plain decoding whatever the drafts are worth (a random MTP layer: acceptance ~0; a bigram draft on a
// bigram model: ~1; in between), in batches, with retraction, prefix hits, stops inside an accepted run,
// aborts, penalised requests beside speculating ones; sampled outputs with plain decoding's distribution
// (chi-square) and, with device draws, the same tokens for a seed; the pause when drafts fail.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>

#include "host_sampling_backend.h"
#include "runtime/draft_recorder.h"
#include "runtime/spec_decode.h"
#include "spec_decode_test_util.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;
using namespace ds::spec_test;

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

// The MTP layer's KV has no gap: every position a draft's attention reads was written by the layer itself,
// never left to what the pool held before. Each case runs its requests one after another on a runner
// whose MTP pools start as zeros, then again as NaN: the same drafts must be accepted the same. A gap
// would read NaN in the second run: those drafts' rows fail to draw, draft token 0, and are rejected.
namespace {
struct GapRun {
  std::map<std::string, Collector::Result> got;
  EngineStats stats;
  int64_t fill_steps = 0;  // KV-only steps through the draft recorder's Fill pass (padded)
};
// Runs `phases` one after another (a later phase may hit an earlier one's cached pages), the requests of a
// phase together. padded: draft steps as the GPU records them (runtime/draft_recorder.h), op by op here.
using Phases = std::vector<std::vector<GenerateRequest>>;
GapRun run_on_poisoned_mtp_pools(const model::Model& m, const tok::Tokenizer& tok, EngineConfig ec,
                                 const Phases& phases, bool poison, bool padded = false) {
  RunnerConfig rc = runner();
  rc.num_pages = int32_t(ec.max_total_tokens / ec.page_size);
  rc.page_size = ec.page_size;
  rc.cuda_graph_max_bs = 4;
  rc.draft_padded_eager = padded;
  ModelRunner r(rc, m);
  const size_t mtp = size_t(m.config().num_hidden_layers);
  for (Tensor* pool : {&r.kv().latent[mtp], &r.kv().index_k[mtp]}) {
    EXPECT_EQ(pool->dtype(), DType::F32);
    std::fill_n(pool->f32(), pool->numel(), poison ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
  }
  auto e = make_engine(ec, {&r}, tok);
  GapRun out;
  for (const auto& phase : phases) {
    Collector c(std::chrono::seconds(120));
    for (const auto& q : phase) e->submit(q, c.sink(q.id));
    for (const auto& q : phase) out.got[q.id] = c.wait(q.id);
  }
  out.stats = e->stats();
  e->shutdown();
  if (padded) out.fill_steps = r.draft_recorder()->stats().fill_steps;
  return out;
}
void expect_same_drafts(const GapRun& zeros, const GapRun& nan) {
  for (const auto& [id, r] : zeros.got) {
    EXPECT_EQ(nan.got.at(id).tokens, r.tokens) << id;
    EXPECT_EQ(nan.got.at(id).last.spec_verify_ct, r.last.spec_verify_ct) << id << ": decode steps";
  }
  EXPECT_EQ(nan.stats.spec_drafted_at, zeros.stats.spec_drafted_at);
  EXPECT_EQ(nan.stats.spec_accepted_at, zeros.stats.spec_accepted_at);
}
}  // namespace

// Across a pause: paused steps still run the layer's KV-only pass (a bound no window can meet pauses
// after every window; the request lasts through the first pause and the window after it); also as the GPU
// records draft steps, where each paused step's KV goes through the recorder's Fill pass.
TEST_F(SpecDecodeTest, PausedSpeculationLeavesNoGapInTheMtpKv) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  EngineConfig ec = config(1024, kSteps);
  ec.context_length = 400;
  ec.speculative_min_accept_length = 10;  // above any window's tokens per step (S + 1 = 4): always pauses
  const Phases reqs = {{greedy("long", prompt_of(5, 6), 340), greedy("long2", prompt_of(6, 9), 340)}};
  const GapRun zeros = run_on_poisoned_mtp_pools(*bigram_, tok, ec, reqs, false),
               nan = run_on_poisoned_mtp_pools(*bigram_, tok, ec, reqs, true),
               padded = run_on_poisoned_mtp_pools(*bigram_, tok, ec, reqs, true, true);
  expect_same_drafts(zeros, nan);
  expect_same_drafts(zeros, padded);
  EXPECT_GT(padded.fill_steps, 250) << "the paused steps' KV through the Fill pass";
  EXPECT_EQ(zeros.stats.spec_pauses_total, 2) << "a window after the first pause";
  // Both windows verified both requests' drafts (2 x 8 steps), and a bigram draft on a bigram model is
  // mostly accepted.
  ASSERT_EQ(zeros.stats.spec_drafted_at.size(), size_t(kSteps));
  EXPECT_EQ(zeros.stats.spec_drafted_at[0], 2 * 2 * int64_t(kSpecWindow));
  EXPECT_GE(zeros.stats.spec_accepted_at[0], 2 * 2 * int64_t(kSpecWindow) - 4);
}

// Cached pages: written by a request that does not speculate (penalties), whose KV-only pass ran too, and
// by one that finished (a conversation's next turn hits its prompt and its answer), whose last step's
// positions went in as well: a speculating request that hits either drafts over whole KV.
TEST_F(SpecDecodeTest, CachedPagesHoldTheMtpKv) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto pen = greedy("pen", prompt_of(8, 23), 12);
  pen.sampling.frequency_penalty = 0.7f;
  std::vector<int32_t> longer = pen.prompt;
  longer.insert(longer.end(), {7, 9, 11});
  const auto turn1 = greedy("turn1", prompt_of(9, 12), 17);  // 28 tokens computed: 7 whole pages
  // The next turn: the first one's prompt and answer (greedy: the same with or without speculation), more.
  std::vector<int32_t> next = turn1.prompt;
  const auto answer = run_all(*bigram_, tok, {turn1}, false).by_id["turn1"].tokens;
  next.insert(next.end(), answer.begin(), answer.end());
  next.insert(next.end(), {5, 6});
  const Phases reqs = {{pen}, {greedy("spec", longer, 40)}, {turn1}, {greedy("turn2", next, 30)}};
  const GapRun zeros = run_on_poisoned_mtp_pools(*bigram_, tok, config(), reqs, false),
               nan = run_on_poisoned_mtp_pools(*bigram_, tok, config(), reqs, true),
               padded = run_on_poisoned_mtp_pools(*bigram_, tok, config(), reqs, true, true);
  expect_same_drafts(zeros, nan);
  expect_same_drafts(zeros, padded);
  EXPECT_GT(padded.fill_steps, 8) << "the plain request's decode steps through the Fill pass";
  EXPECT_EQ(zeros.got.at("turn1").tokens, answer);
  EXPECT_EQ(zeros.got.at("pen").last.spec_verify_ct, 0) << "penalties decode plainly";
  EXPECT_GE(zeros.got.at("spec").last.cached_tokens, 20) << "it hits the plain request's pages";
  EXPECT_GE(zeros.got.at("turn2").last.cached_tokens, int32_t(turn1.prompt.size() + answer.size()) - 4)
      << "the next turn hits the first one's prompt and answer";
  EXPECT_GT(zeros.stats.spec_accepted_at.at(0), 10);
}

// Requests that do not draft beside ones that do, in one draft step as the GPU records it: the drafting
// sequences' passes, and the others' one-token KV through the Fill pass first. A later turn of a plain
// request's conversation reads that KV: the same drafts on NaN pools, padded, as on zeros op by op.
TEST_F(SpecDecodeTest, PlainRequestsBesideDraftingOnesFillTheMtpKv) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<GenerateRequest> first;
  for (int i = 0; i < 3; ++i) {
    first.push_back(greedy("spec" + std::to_string(i), prompt_of(20 + i, 5 + 3 * i), 30));
    auto pen = greedy("pen" + std::to_string(i), prompt_of(30 + i, 8), 28);  // 36 computed: 9 whole pages
    pen.sampling.presence_penalty = 0.5f;
    first.push_back(pen);
  }
  // pen0's next turn: its prompt and answer (penalties decode plainly: the same with speculation), more.
  std::vector<int32_t> next = first[1].prompt;
  const auto answer = run_all(*half_, tok, {first[1]}, false).by_id["pen0"].tokens;
  next.insert(next.end(), answer.begin(), answer.end());
  next.insert(next.end(), {5, 6});
  const Phases phases = {first, {greedy("turn2", next, 30)}};
  const GapRun zeros = run_on_poisoned_mtp_pools(*half_, tok, config(), phases, false),
               padded = run_on_poisoned_mtp_pools(*half_, tok, config(), phases, true, true);
  expect_same_drafts(zeros, padded);
  EXPECT_EQ(zeros.got.at("pen0").tokens, answer);
  EXPECT_GE(zeros.got.at("turn2").last.cached_tokens, 32) << "the next turn hits pen0's prompt and answer";
  EXPECT_GT(padded.fill_steps, 8);
  EXPECT_GT(zeros.stats.spec_drafted_at.at(0), 10);
}
