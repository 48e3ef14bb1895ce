#include "grammar/grammar_compiler.h"

#include "grammar/dsml_tool_grammar.h"
#include "grammar/ebnf.h"
#include "grammar/regex.h"

namespace ds::grammar {

const char* kind_name(GrammarKind kind) {
  switch (kind) {
    case GrammarKind::JsonSchema: return "json_schema";
    case GrammarKind::JsonObject: return "json_object";
    case GrammarKind::Regex: return "regex";
    case GrammarKind::Ebnf: return "ebnf";
    case GrammarKind::DsmlToolCalls: return "dsml_tool_calls";
  }
  return "?";
}

GrammarCompiler::GrammarCompiler(std::shared_ptr<const TokenTable> vocab, size_t cache_entries, JsonGrammarOptions json)
    : vocab_(std::move(vocab)), json_(json), node_cache_(std::make_shared<NodeTokensCache>()), max_entries_(cache_entries) {}

Grammar GrammarCompiler::build(const GrammarSpec& spec, const JsonGrammarOptions& json) {
  switch (spec.kind) {
    case GrammarKind::JsonSchema: return json_schema_grammar(spec.text, json);
    case GrammarKind::JsonObject: return json_object_grammar(json);
    case GrammarKind::Regex: return regex_grammar(spec.text);
    case GrammarKind::Ebnf: return parse_ebnf(spec.text);
    case GrammarKind::DsmlToolCalls: return dsml_tool_calls_grammar(spec.text);
  }
  return {};
}

std::shared_ptr<const CompiledGrammar> GrammarCompiler::compile(const GrammarSpec& spec) {
  const std::string key = std::string(kind_name(spec.kind)) + '\n' + spec.text;
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return it->second->second;
    }
  }
  // Compiled outside the lock: two requests with one new schema may both compile it (harmless).
  auto compiled = std::make_shared<const CompiledGrammar>(compile_pda(build(spec, json_)), vocab_, node_cache_);
  std::lock_guard lock(mu_);
  if (index_.count(key) == 0) {
    lru_.emplace_front(key, compiled);
    index_[key] = lru_.begin();
    if (lru_.size() > max_entries_) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return compiled;
}

size_t GrammarCompiler::cache_hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}

size_t GrammarCompiler::cache_size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

}  // namespace ds::grammar
