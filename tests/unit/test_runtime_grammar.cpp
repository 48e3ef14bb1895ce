// Structured outputs through the engine on the tiny golden model (random weights: its choices are
// noise, so only the grammar makes the output valid): every finished output under a JSON schema
// parses and validates; the grammar starts after its trigger; a grammar that cannot finish within
// max_tokens ends with "length" and a valid prefix. Where the backend samples (a fake device: the
// masks go as bitmasks, computed during the forward): the same, with logprobs, several samples of
// one prompt, and a pool so small that requests are retracted, which changes no token. The
// vocabulary is synthetic (the model has 512 ids): the grammar reads each id as the bytes of a small
// table, the stop token is the EOS id 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>

#include "backend/backend.h"
#include "chat/tool_parser.h"
#include "host_sampling_backend.h"
#include "grammar/grammar_compiler.h"
#include "json_schema_oracle.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "tokenizer_test_util.h"

using namespace ds;
using namespace ds::runtime;

namespace {

std::shared_ptr<const grammar::TokenTable> tiny_vocab() {
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"{\"", "\":", "\",", "\"}", "true", "false", "null", "12", "0.", "e-", ", ", "]}", "[\"", "ab", "xyz", " \"", "-7"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)] + std::string(i / std::size(pieces), 'q');
  return grammar::TokenTable::from_bytes(std::move(t), {1});
}

struct Result {
  std::vector<int32_t> tokens;
  RequestOutput last;
  size_t logprobs = 0, bad_top = 0;  // logprob entries; entries with a wrong top list
};

class Waiter {
 public:
  OutputSink sink(const std::string& id) {
    return [this, id](RequestOutput&& o) {
      std::lock_guard lk(mu_);
      auto& r = results_[id];
      r.tokens.insert(r.tokens.end(), o.token_ids.begin(), o.token_ids.end());
      r.logprobs += o.logprobs.size();
      // Top logprobs are over the allowed tokens: 2, or 1 where the grammar allows a single token.
      for (const auto& lp : o.logprobs) r.bad_top += lp.top.empty() || lp.top.size() > 2;
      if (o.finished) {
        r.last = o;
        done_[id] = true;
        cv_.notify_all();
      }
    };
  }
  Result wait(const std::string& id) {
    std::unique_lock lk(mu_);
    EXPECT_TRUE(cv_.wait_for(lk, std::chrono::seconds(120), [&] { return done_[id]; })) << id;
    return results_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Result> results_;
  std::map<std::string, bool> done_;
};

// The engine of these tests: pages of 4 on the tiny golden model, EOS id 1.
EngineConfig tiny_config(int64_t pool_tokens = 4096, int32_t context = 256) {
  EngineConfig cfg;
  cfg.page_size = 4;
  cfg.max_total_tokens = pool_tokens;
  cfg.context_length = context;
  cfg.eos_token_ids = {1};
  return cfg;
}

const char* kSchema = R"({"type":"object","properties":{"name":{"type":"string","maxLength":6},"n":{"type":"integer","minimum":0,"maximum":99},
  "tags":{"type":"array","items":{"enum":["ab","xyz"]},"maxItems":2},"ok":{"type":"boolean"}},"required":["name","n","tags","ok"],"additionalProperties":false})";

TEST(EngineGrammar, OutputsFollowTheSchema) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto be = backend::make_cpu_backend(0);
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be);
  auto e = make_engine(tiny_config(), *model, tok);
  auto vocab = tiny_vocab();
  grammar::GrammarCompiler compiler(vocab);
  auto g = compiler.compile({grammar::GrammarKind::JsonSchema, kSchema});
  const auto schema = grammar::testing::OJson::parse(kSchema);
  auto text_of = [&](const std::vector<int32_t>& ids, size_t from) {
    std::string s;
    for (size_t i = from; i < ids.size(); ++i) s += vocab->bytes(ids[i]);
    return s;
  };

  Waiter w;
  const int kRequests = 6;
  for (int i = 0; i < kRequests; ++i) {
    GenerateRequest r;
    r.id = "g" + std::to_string(i);
    r.prompt = {5, 6, 7, int32_t(8 + i)};
    r.max_new_tokens = 200;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = uint64_t(100 + i);
    r.grammar.grammar = g;
    if (i % 2) r.grammar.trigger = {300};  // odd ones: free until the output holds token 300
    e->submit(r, w.sink(r.id));
  }
  int valid = 0;
  for (int i = 0; i < kRequests; ++i) {
    Result res = w.wait("g" + std::to_string(i));
    // Where the grammar applies: from the start, or after the trigger if it appeared.
    size_t from = 0;
    if (i % 2) {
      from = res.tokens.size();
      for (size_t k = 0; k < res.tokens.size(); ++k)
        if (res.tokens[k] == 300) {
          from = k + 1;
          break;
        }
      if (from == res.tokens.size()) continue;  // the trigger never came: the output was free
    }
    if (res.last.finish_reason == FinishReason::Stop) {
      ASSERT_EQ(res.tokens.back(), 1) << "stopped by EOS";
      res.tokens.pop_back();
      const std::string doc = text_of(res.tokens, from);
      grammar::testing::OJson parsed;
      ASSERT_NO_THROW(parsed = grammar::testing::OJson::parse(doc)) << doc;
      EXPECT_TRUE(grammar::testing::validate(schema, parsed, schema)) << doc;
      ++valid;
    } else {
      EXPECT_EQ(res.last.finish_reason, FinishReason::Length);
      grammar::GrammarMatcher m(g);
      EXPECT_TRUE(m.accept_bytes(text_of(res.tokens, from))) << "a valid prefix";
    }
  }
  EXPECT_GE(valid, 2) << "too few outputs finished within max_tokens to check";
  EXPECT_GT(e->stats().phases.masks_ms, 0) << "the masks' time is reported as its own step phase";

  // Too few tokens to finish: "length", never an invalid "stop".
  GenerateRequest short_req;
  short_req.id = "short";
  short_req.prompt = {5, 6, 7};
  short_req.max_new_tokens = 5;
  short_req.sampling.temperature = 1.0f;
  short_req.grammar.grammar = g;
  e->submit(short_req, w.sink("short"));
  Result res = w.wait("short");
  EXPECT_EQ(res.last.finish_reason, FinishReason::Length);
  grammar::GrammarMatcher m(g);
  EXPECT_TRUE(m.accept_bytes(text_of(res.tokens, 0)));
}

// A grammar that accepted its stop token ends the request even with ignore_eos (as SGLang: a terminated
// grammar finishes the request), with finish_reason stop and the stop token matched; it used to go on
// emitting stop tokens until max_tokens.
TEST(EngineGrammar, TerminatedGrammarEndsTheRequestUnderIgnoreEos) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto be = backend::make_cpu_backend(0);
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be);
  auto e = make_engine(tiny_config(), *model, tok);
  grammar::GrammarCompiler compiler(tiny_vocab());
  auto g = compiler.compile({grammar::GrammarKind::Regex, "(ab|xyz){1,3}"});
  Waiter w;
  for (int i = 0; i < 4; ++i) {
    GenerateRequest r;
    r.id = "t" + std::to_string(i);
    r.prompt = {5, 6, int32_t(7 + i)};
    r.max_new_tokens = 100;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = uint64_t(i);
    r.sampling.ignore_eos = i % 2 == 0;
    r.grammar.grammar = g;
    e->submit(r, w.sink(r.id));
  }
  for (int i = 0; i < 4; ++i) {
    Result res = w.wait("t" + std::to_string(i));
    EXPECT_EQ(res.last.finish_reason, FinishReason::Stop) << i;
    ASSERT_FALSE(res.tokens.empty());
    EXPECT_EQ(res.tokens.back(), 1) << "ends at the stop token";
    EXPECT_EQ(res.last.matched_stop_token.value_or(-1), 1);
    EXPECT_LE(res.tokens.size(), 10u) << "no stop tokens after the grammar's end";
    EXPECT_EQ(std::count(res.tokens.begin(), res.tokens.end(), 1), 1);
  }
}

TEST(EngineGrammar, DeviceMasksWithLogprobsSamplesAndRetraction) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  fakes::HostSamplingBackend hb;
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", hb);
  auto vocab = tiny_vocab();
  grammar::GrammarCompiler compiler(vocab);
  auto g = compiler.compile({grammar::GrammarKind::JsonSchema, kSchema});
  const auto schema = grammar::testing::OJson::parse(kSchema);
  auto run = [&](int64_t pool_tokens, const std::string& tag, int64_t* retractions) {
    auto e = make_engine(tiny_config(pool_tokens), *model, tok);
    Waiter w;
    std::vector<Result> out;
    for (int i = 0; i < 4; ++i) {  // four samples of one prompt (what n = 4 submits)
      GenerateRequest r;
      r.id = tag + std::to_string(i);
      r.prompt = {5, 6, 7, 8};
      r.max_new_tokens = 200;
      r.sampling.temperature = 1.0f;
      r.sampling.seed = uint64_t(300 + i);
      r.sampling.logprobs = true;
      r.sampling.top_logprobs = 2;
      r.grammar.grammar = g;
      e->submit(r, w.sink(r.id));
    }
    for (int i = 0; i < 4; ++i) out.push_back(w.wait(tag + std::to_string(i)));
    *retractions = e->stats().retractions_total;
    return out;
  };
  int64_t roomy_retractions = 0, tight_retractions = 0;
  const auto roomy = run(4096, "roomy", &roomy_retractions);
  const auto tight = run(256, "tight", &tight_retractions);
  EXPECT_GT(tight_retractions, 0) << "the small pool should force retractions";
  EXPECT_GT(hb.draws().size(), 0u) << "the rows were the device's";
  int valid = 0;
  for (size_t i = 0; i < roomy.size(); ++i) {
    EXPECT_EQ(tight[i].tokens, roomy[i].tokens) << "retraction changed request " << i;
    EXPECT_EQ(roomy[i].logprobs, roomy[i].tokens.size());
    EXPECT_EQ(roomy[i].bad_top, 0u);
    std::string doc;
    for (int32_t t : roomy[i].tokens) doc += vocab->bytes(t);
    if (roomy[i].last.finish_reason != FinishReason::Stop) {
      grammar::GrammarMatcher m(g);
      EXPECT_TRUE(m.accept_bytes(doc)) << "a valid prefix: " << doc;
      continue;
    }
    grammar::testing::OJson parsed;
    ASSERT_NO_THROW(parsed = grammar::testing::OJson::parse(doc)) << doc;
    EXPECT_TRUE(grammar::testing::validate(schema, parsed, schema)) << doc;
    ++valid;
  }
  EXPECT_GE(valid, 1) << "no output finished within max_tokens";
}

// tool_choice "auto" with strict tools (the optional call block): on the random model, outputs
// are free text, and those that open a block (its opener is a token of this vocabulary, on ~20
// of the 512 ids, so most do) go on with calls whose arguments the tool parser reads back valid.
TEST(EngineGrammar, OptionalToolCallBlockAfterFreeText) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto be = backend::make_cpu_backend(0);
  auto model = model::Model::load(DS_SOURCE_DIR "/tests/golden/tiny_v32_fp8", *be);
  auto e = make_engine(tiny_config(8192, 512), *model, tok);
  std::vector<std::string> t(512);
  for (int b = 0; b < 256; ++b) t[size_t(2 + b)] = std::string(1, char(b));
  const char* pieces[] = {"\n\n<｜DSML｜function_calls>\n", "<｜DSML｜invoke name=\"", "set_alarm\">\n", "\n</｜DSML｜invoke>",
                          "\n</｜DSML｜function_calls>", "<｜DSML｜parameter name=\"", "hour\" string=\"false\">", "</｜DSML｜parameter>",
                          "label\" string=\"true\">", "12", "ok", "<function", "\n"};
  for (size_t i = 0; i + 258 < 512; ++i) t[258 + i] = pieces[i % std::size(pieces)];
  auto vocab = grammar::TokenTable::from_bytes(std::move(t), {1});
  const auto schema = grammar::testing::OJson::parse(
      R"({"type":"object","properties":{"hour":{"type":"integer","minimum":0,"maximum":23},"label":{"enum":["ok","go"]}},
          "required":["hour"],"additionalProperties":false})");
  grammar::testing::OJson spec = {{"optional", true}, {"parallel", true},
                                  {"tools", {{{"name", "set_alarm"}, {"strict", true}, {"parameters", schema}}}}};
  grammar::GrammarCompiler compiler(vocab);
  auto g = compiler.compile({grammar::GrammarKind::DsmlToolCalls, spec.dump()});

  Waiter w;
  const int kRequests = 8;
  for (int i = 0; i < kRequests; ++i) {
    GenerateRequest r;
    r.id = "t" + std::to_string(i);
    r.prompt = {5, 6, 7, int32_t(20 + i)};
    r.max_new_tokens = 400;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = uint64_t(700 + i);
    r.grammar.grammar = g;
    e->submit(r, w.sink(r.id));
  }
  int with_calls = 0, calls = 0;
  for (int i = 0; i < kRequests; ++i) {
    Result res = w.wait("t" + std::to_string(i));
    if (res.last.finish_reason == FinishReason::Stop) res.tokens.pop_back();  // EOS
    std::string text;
    for (int32_t id : res.tokens) text += vocab->bytes(id);
    if (res.last.finish_reason != FinishReason::Stop) {
      EXPECT_EQ(res.last.finish_reason, FinishReason::Length);
      grammar::GrammarMatcher m(g);
      EXPECT_TRUE(m.accept_bytes(text)) << "a valid prefix: " << text;
      continue;
    }
    EXPECT_TRUE(grammar::grammar_matches(g, text)) << text;
    auto parser = chat::make_tool_parser("deepseekv32", {});
    chat::ToolParseStep a = parser->feed(text), b = parser->finish();
    std::map<int, std::pair<std::string, std::string>> got;  // index -> name, arguments
    for (const auto* step : {&a, &b})
      for (const auto& d : step->calls) {
        if (d.name) got[d.index].first = *d.name;
        got[d.index].second += d.arguments;
      }
    if (got.empty()) {
      EXPECT_EQ(text.find("function_calls>"), std::string::npos) << text;
      continue;
    }
    ++with_calls;
    for (const auto& [index, call] : got) {
      EXPECT_EQ(call.first, "set_alarm");
      const auto args = grammar::testing::OJson::parse(call.second);
      EXPECT_TRUE(grammar::testing::validate(schema, args, schema)) << call.second << "\nfrom\n" << text;
      ++calls;
    }
  }
  std::printf("%d of %d outputs called the tool (%d calls)\n", with_calls, kRequests, calls);
  EXPECT_GE(with_calls, 1) << "no output opened a block: the gated path went untested";
}

}  // namespace
