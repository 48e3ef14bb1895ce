// Speculative decoding (runtime/spec_decode.h) of grammar-constrained requests on the CPU backend: the
// outputs of plain decoding under JSON schemas, a regex and a schema after a trigger token (greedy, and
// seeded device draws), and the grammar walk ahead of the outputs through verify chains.
#include <gtest/gtest.h>

#include "grammar/grammar_compiler.h"
#include "host_sampling_backend.h"
#include "spec_decode_test_util.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;
using namespace ds::spec_test;

namespace {
// The grammar's vocabulary: id 2 + b is byte b, then JSON-ish pieces; the stop token is the EOS id 1.
auto grammar_vocab() {
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"{\"", "\":", "\",", "\"}", "true", "false", "12", "ab", "xyz", " \"", ", \"", "-7"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)] + std::string(i / std::size(pieces), 'q');
  return grammar::TokenTable::from_bytes(std::move(t), {1});
}
}  // namespace

// Grammars speculate: each verify row is sampled under the mask after its draft prefix, drafts the grammar
// refuses are not verified, the matcher follows the emitted tokens. Greedy outputs equal plain decoding's
// (with jump-forward on in both), under a JSON schema (free whitespace, and fixed keys), a regex, and a
// schema that applies only after a trigger token; seeded device draws give the same tokens too (the masked
// distribution of every row is plain decoding's).
TEST_F(SpecDecodeTest, GrammarRequestsSpeculateWithPlainDecodingsOutputs) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto vocab = grammar_vocab();
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
  auto vocab = grammar_vocab();
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
