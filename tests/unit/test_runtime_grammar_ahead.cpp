// The grammar walk ahead of a step's outputs (runtime/grammar_ahead.h): a step's grammar requests advanced
// in parallel on the mask pool, their verdicts taken by the serial output phase. Many concurrent grammar
// requests in one engine give exactly the outputs of the engine-thread path (walk never taken): tokens, text,
// finish reasons, matched stops, errors, logprobs, jump-forward counts — with max_tokens and stop ids / stop
// strings ending requests right before and inside forced runs, a forced continuation the grammar refuses,
// grammars that terminate under ignore_eos, several samples of one prompt and requests without a grammar
// beside them. Plus the tracker's checkpoint / rewind that the walk relies on.
#include <gtest/gtest.h>

#include <algorithm>

#include "backend/backend.h"
#include "engine_test_util.h"
#include "grammar/grammar_compiler.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;
using ds::testing::Collector;

namespace {

// Id 2 + b is byte b, then pieces; the stop token is the EOS id 1 (as the other engine grammar tests).
std::shared_ptr<const grammar::TokenTable> tiny_vocab() {
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"{\"", "\":", "\",", "\"}", "true", "false", "ab", "xyz", " \"", ", \"", "na", "me", "_i"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)] + std::string(i / std::size(pieces), 'q');
  return grammar::TokenTable::from_bytes(std::move(t), {1});
}

// Fixed keys (forced runs between short free values), no free whitespace.
const char* kSchema = R"({"type":"object","properties":{"customer_name":{"type":"string","maxLength":4},
  "is_active_member":{"type":"boolean"},"tier":{"enum":["gold","silver"]},"note":{"type":"string","maxLength":3}},
  "required":["customer_name","is_active_member","tier","note"],"additionalProperties":false})";

struct Outputs {
  std::map<std::string, Collector::Result> out;
  EngineStats stats;
};

class GrammarAheadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    be_ = backend::make_cpu_backend(0).release();
    model_ = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be_).release();
  }
  // All requests at once; `walk_from`: EngineConfig::grammar_ahead_min_requests.
  static Outputs run(const std::vector<GenerateRequest>& reqs, int32_t walk_from, const tok::Tokenizer& tok) {
    EngineConfig cfg;
    cfg.page_size = 4;
    cfg.max_total_tokens = 16384;
    cfg.context_length = 256;
    cfg.eos_token_ids = {1};
    cfg.grammar_ahead_min_requests = walk_from;
    auto e = make_engine(cfg, *model_, tok);
    Collector c(std::chrono::seconds(300));
    for (const auto& q : reqs) e->submit(q, c.sink(q.id));
    Outputs r;
    for (const auto& q : reqs) r.out[q.id] = c.wait(q.id);
    r.stats = e->stats();
    return r;
  }
  static GenerateRequest request(const std::string& id, std::shared_ptr<const grammar::CompiledGrammar> g,
                                 int32_t max_new, int seed = 0) {
    GenerateRequest r;
    r.id = id;
    r.prompt = {5, 6, 7, 8};
    r.max_new_tokens = max_new;
    r.sampling.temperature = seed ? 1.0f : 0.0f;
    r.sampling.seed = uint64_t(seed);
    r.grammar.grammar = std::move(g);
    return r;
  }
  static void expect_same(const Collector::Result& a, const Collector::Result& b, const std::string& id) {
    EXPECT_EQ(a.tokens, b.tokens) << id;
    EXPECT_EQ(a.text, b.text) << id;
    EXPECT_EQ(a.deliveries, b.deliveries) << id;
    EXPECT_EQ(a.last.finish_reason, b.last.finish_reason) << id;
    EXPECT_EQ(a.last.matched_stop_token, b.last.matched_stop_token) << id;
    EXPECT_EQ(a.last.matched_stop_str, b.last.matched_stop_str) << id;
    EXPECT_EQ(a.last.error, b.last.error) << id;
    EXPECT_EQ(a.last.completion_tokens, b.last.completion_tokens) << id;
    EXPECT_EQ(a.last.jump_forward_tokens, b.last.jump_forward_tokens) << id;
    ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << id;
    for (size_t i = 0; i < a.logprobs.size(); ++i) {
      EXPECT_EQ(a.logprobs[i].token, b.logprobs[i].token) << id << " " << i;
      EXPECT_EQ(a.logprobs[i].logprob, b.logprobs[i].logprob) << id << " " << i;
      EXPECT_EQ(a.logprobs[i].top, b.logprobs[i].top) << id << " " << i;
    }
  }
  static backend::Backend* be_;
  static model::Model* model_;
};
backend::Backend* GrammarAheadTest::be_ = nullptr;
model::Model* GrammarAheadTest::model_ = nullptr;

}  // namespace

TEST_F(GrammarAheadTest, ParallelWalkGivesTheEngineThreadsOutputs) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto v = tiny_vocab();
  grammar::JsonGrammarOptions fixed;
  fixed.fixed_separators = true;
  grammar::GrammarCompiler compiler(v, 16, fixed);
  auto g = compiler.compile({grammar::GrammarKind::JsonSchema, kSchema});
  auto regex = compiler.compile({grammar::GrammarKind::Regex, "(ab|xyz){1,3}"});
  // The greedy output in full: every prefix length below is a request ended by max_tokens there, so some
  // end right before a forced run (their walk's jump-forward is dropped) and some inside one.
  auto full_req = request("full", g, 200);
  full_req.sampling.logprobs = true;
  full_req.sampling.top_logprobs = 2;
  const Collector::Result full = run({full_req}, 1 << 30, tok).out["full"];
  ASSERT_EQ(full.last.finish_reason, FinishReason::Stop);
  ASSERT_GE(full.last.jump_forward_tokens, 20);
  const int32_t len = int32_t(full.tokens.size());
  // Which of its tokens were forced (logprob 0, the token alone in the top list; a sampled token has two).
  std::vector<bool> forced;
  for (const auto& l : full.logprobs) forced.push_back(l.logprob == 0.0f && l.top.size() == 1);
  ASSERT_EQ(std::count(forced.begin(), forced.end(), true), full.last.jump_forward_tokens);
  std::vector<GenerateRequest> reqs;
  for (int32_t n = 1; n <= len; ++n) reqs.push_back(request("len" + std::to_string(n), g, n));
  // Each token of the output as a stop id (forced and sampled ones), some under ignore_eos.
  for (int32_t k = 0; k < len; ++k) {
    auto r = request("stopid" + std::to_string(k), g, 200);
    r.stop_token_ids = {full.tokens[size_t(k)]};
    r.sampling.ignore_eos = k % 3 == 0;
    reqs.push_back(r);
  }
  // Stop strings: the text of single tokens of the output (where it first appears, the request ends).
  for (int32_t k = 1; k < len; k += 2) {
    const std::string s = tok.decode(std::span<const int32_t>(&full.tokens[size_t(k)], 1));
    if (s.empty()) continue;
    auto r = request("stopstr" + std::to_string(k), g, 200);
    r.stop = {s};
    r.no_stop_trim = k % 4 == 1;
    reqs.push_back(r);
  }
  // Samples of one prompt (n > 1), with logprobs; a regex that terminates under ignore_eos.
  for (int i = 1; i <= 6; ++i) {
    auto r = request("sample" + std::to_string(i), g, 200, 40 + i);
    r.sampling.logprobs = i % 2 == 0;
    r.sampling.top_logprobs = i % 2 == 0 ? 2 : 0;
    reqs.push_back(r);
    auto t = request("regex" + std::to_string(i), regex, 50, 60 + i);
    t.sampling.ignore_eos = true;
    reqs.push_back(t);
  }
  // A forced continuation the grammar refuses ("ab" cannot open a JSON object): an error, the same message.
  auto refused = request("refused", g, 20);
  const int32_t ab = 258 + 6;  // the piece "ab"
  ASSERT_EQ(v->bytes(ab), "ab");
  refused.forced.alternatives = {{ab, ab + 1}};
  reqs.push_back(refused);
  // And requests without a grammar in the same steps.
  for (int i = 0; i < 3; ++i) reqs.push_back(request("plain" + std::to_string(i), nullptr, 12, i));

  const Outputs serial = run(reqs, 1 << 30, tok);  // the walk never taken
  const Outputs ahead = run(reqs, 1, tok);         // every step with a grammar request walks
  for (const auto& q : reqs) expect_same(ahead.out.at(q.id), serial.out.at(q.id), q.id);
  EXPECT_EQ(ahead.stats.jump_forward_tokens_total, serial.stats.jump_forward_tokens_total);
  EXPECT_EQ(ahead.stats.generation_tokens_total, serial.stats.generation_tokens_total);
  EXPECT_EQ(ahead.stats.used_pages, ahead.stats.cached_pages) << "no page leaks";

  // The cases above happened (else the comparison says little).
  EXPECT_EQ(ahead.out.at("len" + std::to_string(len)).tokens, full.tokens);
  EXPECT_EQ(ahead.out.at("refused").last.finish_reason, FinishReason::Error);
  EXPECT_EQ(ahead.out.at("refused").last.error, fmt::format("token {} is not allowed by the request's grammar", ab));
  for (int32_t n = 1; n < len; ++n)
    EXPECT_EQ(ahead.out.at("len" + std::to_string(n)).last.finish_reason, FinishReason::Length) << n;
  // Stops right before a forced run (the walk's jump-forward dropped) and inside one (the walk rewound).
  int stopped_by_string = 0, before_forced = 0, inside_forced = 0, terminated_ignoring_eos = 0;
  for (const auto& [id, r] : ahead.out) {
    stopped_by_string += r.last.matched_stop_str.has_value();
    terminated_ignoring_eos += id.rfind("regex", 0) == 0 && r.last.matched_stop_token == 1;
    const size_t end = r.tokens.size();
    if (id.rfind("stop", 0) != 0 || end == 0 || end >= full.tokens.size() || r.last.finish_reason != FinishReason::Stop)
      continue;
    before_forced += !forced[end - 1] && forced[end];
    inside_forced += forced[end - 1] && forced[end];
  }
  EXPECT_GT(stopped_by_string, 0);
  EXPECT_GT(before_forced, 0);
  EXPECT_GT(inside_forced, 0);
  EXPECT_EQ(terminated_ignoring_eos, 6);
  std::printf("%zu requests; stops by string %d, right before forced text %d, inside it %d\n", reqs.size(),
              stopped_by_string, before_forced, inside_forced);
}

// The walk goes past where a request ended and rewinds: the state (and so the next mask) is the one of the
// checkpoint, whatever was accepted after it.
TEST(GrammarTrackerCheckpoint, RewindGivesTheMaskOfTheCheckpoint) {
  auto v = tiny_vocab();
  grammar::GrammarCompiler compiler(v);
  GrammarConstraint spec;
  spec.grammar = compiler.compile({grammar::GrammarKind::Regex, "(ab|xyz){1,4}"});
  spec.trigger = {7};  // free until token 7
  GrammarTracker t(spec);
  const int32_t ab = 258 + 6, xyz = 258 + 7;
  std::vector<int32_t> history = {5, 6, 7};
  auto mask = [&] {
    t.prepare();
    return t.allowed_bits() ? *t.allowed_bits() : std::vector<uint64_t>{};
  };
  // Accepting the trigger, walked ahead from a tracker still free: rewinding makes it free again.
  const auto free = t.checkpoint();
  ASSERT_TRUE(t.accept(7, history, {}, 2));
  EXPECT_TRUE(t.active());
  t.rewind(free);
  EXPECT_FALSE(t.active());
  ASSERT_TRUE(t.accept(7, history, 2));
  ASSERT_TRUE(t.accept(ab, history, std::vector<int32_t>{ab}, 2));
  const auto cp = t.checkpoint();
  const auto at_cp = mask();
  ASSERT_TRUE(t.accept(xyz, history, std::vector<int32_t>{ab, xyz}, 2));
  ASSERT_TRUE(t.accept(1, history, std::vector<int32_t>{ab, xyz, 1}, 2));
  EXPECT_TRUE(t.terminated());
  t.rewind(cp);
  EXPECT_FALSE(t.terminated());
  EXPECT_TRUE(t.needs_prepare());
  EXPECT_EQ(mask(), at_cp);
}
