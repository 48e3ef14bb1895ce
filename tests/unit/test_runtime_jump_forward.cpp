// Jump-forward decoding in the engine (runtime/engine_jump_forward.cpp) on the tiny golden model (random
// weights: its choices are noise, the grammar forces most bytes). The grammar's vocabulary is synthetic
// (id 2 + b is byte b, then pieces; the stop token is the EOS id 1), so forced bytes are split by longest
// match. Checks: a fully forced output is the text plain decoding gives, with no forward pass at all; a
// schema with fixed keys gives valid documents in fewer steps (exactly: steps + forced tokens = output
// tokens for a request alone); max_tokens and stop ids inside a forced run end it at the right token;
// forced tokens report logprob 0; the forced tokens are streamed.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "engine_test_util.h"
#include "grammar/grammar_compiler.h"
#include "json_schema_oracle.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;
using ds::testing::Collector;

namespace {

std::shared_ptr<const grammar::TokenTable> tiny_vocab() {
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"{\"", "\":", "\",", "\"}", "true", "false", "ab", "xyz", " \"", ", \"", "na", "me", "_i"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)] + std::string(i / std::size(pieces), 'q');
  return grammar::TokenTable::from_bytes(std::move(t), {1});
}

// Long fixed keys, a short free string, a boolean, a one-value enum; no free whitespace.
const char* kSchema = R"({"type":"object","properties":{"customer_name":{"type":"string","maxLength":4},
  "is_active_member":{"type":"boolean"},"membership_tier":{"enum":["gold"]}},
  "required":["customer_name","is_active_member","membership_tier"],"additionalProperties":false})";

struct Outcome {
  std::vector<Collector::Result> out;
  EngineStats stats;
};

class JumpForwardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    be_ = backend::make_cpu_backend(0).release();
    model_ = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be_).release();
  }
  // Requests one after another (each alone in the engine, so the step count is its own) or all at once.
  Outcome run(const std::vector<GenerateRequest>& reqs, bool jump_forward, bool one_by_one = true) {
    EngineConfig cfg;
    cfg.page_size = 4;
    cfg.max_total_tokens = 4096;
    cfg.context_length = 256;
    cfg.eos_token_ids = {1};
    cfg.jump_forward = jump_forward;
    auto e = make_engine(cfg, *model_, *ds::tok::testing::real_tokenizer());
    Collector c(std::chrono::seconds(120));
    Outcome r;
    for (const auto& q : reqs) {
      e->submit(q, c.sink(q.id));
      if (one_by_one) r.out.push_back(c.wait(q.id));
    }
    if (!one_by_one)
      for (const auto& q : reqs) r.out.push_back(c.wait(q.id));
    r.stats = e->stats();
    return r;
  }
  static GenerateRequest request(const std::string& id, std::shared_ptr<const grammar::CompiledGrammar> g,
                                 int32_t max_new = 120) {
    GenerateRequest r;
    r.id = id;
    r.prompt = {5, 6, 7, 8};
    r.max_new_tokens = max_new;
    r.sampling.temperature = 0;
    r.grammar.grammar = std::move(g);
    return r;
  }
  static std::string text_of(const grammar::TokenTable& v, const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += v.bytes(id);
    return s;
  }
  static backend::Backend* be_;
  static model::Model* model_;
};
backend::Backend* JumpForwardTest::be_ = nullptr;
model::Model* JumpForwardTest::model_ = nullptr;

}  // namespace

// Everything forced (a const object): the same text as plain decoding (whose tokens are the model's
// choice among the splits the mask allows, so the ids may differ), with no forward pass at all: the
// whole output, EOS included, is appended at arrival.
TEST_F(JumpForwardTest, FullyForcedOutputIsPlainDecodingsTextWithoutSteps) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto v = tiny_vocab();
  grammar::GrammarCompiler compiler(v);
  auto g = compiler.compile({grammar::GrammarKind::Ebnf, R"(root ::= "{\"name\": \"Ada\", \"tags\": [\"ab\", \"xyz\"]}")"});
  const auto plain = run({request("p", g)}, false);
  const auto jumped = run({request("j", g)}, true);
  const auto& a = plain.out[0];
  const auto& b = jumped.out[0];
  EXPECT_EQ(a.last.finish_reason, FinishReason::Stop);
  EXPECT_EQ(b.last.finish_reason, FinishReason::Stop);
  EXPECT_EQ(b.last.matched_stop_token, 1);
  EXPECT_EQ(text_of(*v, b.tokens), text_of(*v, a.tokens));
  EXPECT_EQ(text_of(*v, b.tokens), "{\"name\": \"Ada\", \"tags\": [\"ab\", \"xyz\"]}");
  EXPECT_EQ(plain.stats.steps_total, int64_t(a.tokens.size())) << "one forward per token";
  EXPECT_EQ(jumped.stats.steps_total, 0) << "nothing left to sample";
  EXPECT_EQ(b.last.jump_forward_tokens, int32_t(b.tokens.size()));
  EXPECT_EQ(jumped.stats.jump_forward_tokens_total, int64_t(b.tokens.size()));
  EXPECT_EQ(plain.stats.jump_forward_tokens_total, 0);
  EXPECT_EQ(jumped.stats.used_pages, jumped.stats.cached_pages) << "no page leaks";
  EXPECT_GE(b.deliveries, int(b.tokens.size())) << "each forced token streamed";
}

// Fixed keys: every output validates, and a forward pass is saved per forced token. A request alone
// samples one token per step, so steps + forced tokens = its output tokens exactly.
TEST_F(JumpForwardTest, FixedKeySchemaValidatesInFewerSteps) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto v = tiny_vocab();
  grammar::JsonGrammarOptions fixed;
  fixed.fixed_separators = true;
  grammar::GrammarCompiler compiler(v, 16, fixed);
  auto g = compiler.compile({grammar::GrammarKind::JsonSchema, kSchema});
  const auto schema = grammar::testing::OJson::parse(kSchema);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 4; ++i) {
    auto r = request("s" + std::to_string(i), g);
    r.prompt.push_back(20 + i);
    if (i % 2) r.sampling.temperature = 1.0f, r.sampling.seed = uint64_t(40 + i);
    reqs.push_back(r);
  }
  int64_t steps[2] = {0, 0};
  for (bool jf : {false, true}) {
    for (const auto& q : reqs) {
      const Outcome one = run({q}, jf);
      const auto& o = one.out[0];
      ASSERT_EQ(o.last.finish_reason, FinishReason::Stop) << q.id << " jf " << jf;
      const std::string doc = text_of(*v, std::vector<int32_t>(o.tokens.begin(), o.tokens.end() - 1));
      grammar::testing::OJson parsed;
      ASSERT_NO_THROW(parsed = grammar::testing::OJson::parse(doc)) << doc;
      EXPECT_TRUE(grammar::testing::validate(schema, parsed, schema)) << doc;
      EXPECT_EQ(one.stats.steps_total + one.stats.jump_forward_tokens_total, int64_t(o.tokens.size())) << doc;
      EXPECT_EQ(o.last.jump_forward_tokens, one.stats.jump_forward_tokens_total);
      EXPECT_EQ(o.last.completion_tokens, int32_t(o.tokens.size()));
      if (jf) {
        EXPECT_GE(o.last.jump_forward_tokens, 20) << "the keys and the closing are forced: " << doc;
      }
      steps[jf] += one.stats.steps_total;
      std::printf("jf %d %s: %zu tokens, %lld steps: %s\n", int(jf), q.id.c_str(), o.tokens.size(),
                  (long long)one.stats.steps_total, doc.c_str());
    }
  }
  EXPECT_LT(steps[1] * 3, steps[0]) << "jump-forward should save most forward passes here";
  // All at once (forced extend chunks beside other requests' decodes): the same outputs.
  const Outcome batch = run(reqs, true, false);
  const Outcome alone = run(reqs, true);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(batch.out[i].tokens, alone.out[i].tokens) << reqs[i].id;
}

// max_tokens inside a forced run ends the output there ("length", the exact count); a stop token id
// inside it ends it at that token; forced tokens report logprob 0 with themselves as the top entry.
TEST_F(JumpForwardTest, LimitsAndLogprobsInsideAForcedRun) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto v = tiny_vocab();
  grammar::GrammarCompiler compiler(v);
  auto g = compiler.compile({grammar::GrammarKind::Ebnf, R"(root ::= "{\"name\": \"" [a-z]{1,4} "\", \"tags\": [\"xyz\"]}")"});
  const auto full = run({request("full", g)}, true).out[0];
  ASSERT_EQ(full.last.finish_reason, FinishReason::Stop);
  ASSERT_GE(full.tokens.size(), 8u);
  for (int32_t limit : {1, 2, 3, int32_t(full.tokens.size()) - 2}) {
    const auto o = run({request("len", g, limit)}, true).out[0];
    EXPECT_EQ(o.last.finish_reason, FinishReason::Length) << limit;
    EXPECT_EQ(o.last.completion_tokens, limit);
    EXPECT_EQ(o.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + limit)) << limit;
  }
  // A stop id that the closing run forces (the piece `"]}`' last byte's token is not a piece: take the
  // third token from the end, inside the closing run).
  const int32_t stop_at = full.tokens[full.tokens.size() - 3];
  auto stop = request("stop", g);
  stop.stop_token_ids = {stop_at};
  const auto s = run({stop}, true).out[0];
  EXPECT_EQ(s.last.finish_reason, FinishReason::Stop);
  EXPECT_EQ(s.last.matched_stop_token, stop_at);
  const size_t first = size_t(std::find(full.tokens.begin(), full.tokens.end(), stop_at) - full.tokens.begin());
  EXPECT_EQ(s.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + long(first) + 1));

  auto lp = request("lp", g);
  lp.sampling.logprobs = true;
  lp.sampling.top_logprobs = 3;
  const auto o = run({lp}, true).out[0];
  ASSERT_EQ(o.logprobs.size(), o.tokens.size());
  int forced = 0;
  for (const auto& l : o.logprobs)
    if (l.logprob == 0.0f && l.top.size() == 1 && l.top[0].first == l.token && l.top[0].second == 0.0f) ++forced;
  EXPECT_EQ(forced, o.last.jump_forward_tokens);
  EXPECT_GT(forced, 10);
}
