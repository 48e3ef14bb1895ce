// The entry point for the server and the engine: a request's constraint (JSON Schema, any JSON
// object, regex, EBNF) -> a CompiledGrammar for one vocabulary, cached by its kind and text so a
// schema sent again is not compiled again. Thread-safe.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "grammar/compiled_grammar.h"
#include "grammar/json_schema.h"

namespace ds::grammar {

// DsmlToolCalls: a DeepSeek-V3.2 tool-call block with schema-checked arguments (dsml_tool_grammar.h;
// the text is its spec JSON).
enum class GrammarKind { JsonSchema, JsonObject, Regex, Ebnf, DsmlToolCalls };
const char* kind_name(GrammarKind kind);

struct GrammarSpec {
  GrammarKind kind = GrammarKind::JsonObject;
  std::string text;  // the schema (JSON text), the pattern, the EBNF or the tool spec; empty for JsonObject
};

class GrammarCompiler {
 public:
  // `json`: how JSON Schema / JSON object grammars are written (whitespace), for every one compiled.
  explicit GrammarCompiler(std::shared_ptr<const TokenTable> vocab, size_t cache_entries = 256,
                           JsonGrammarOptions json = {});

  // Throws ds::Error with a message fit for the client (names the unsupported keyword / construct).
  std::shared_ptr<const CompiledGrammar> compile(const GrammarSpec& spec);
  // The Grammar alone (no vocabulary work), for tools and tests.
  static Grammar build(const GrammarSpec& spec, const JsonGrammarOptions& json = {});

  const TokenTable& vocab() const { return *vocab_; }
  size_t cache_hits() const;
  size_t cache_size() const;

 private:
  std::shared_ptr<const TokenTable> vocab_;
  JsonGrammarOptions json_;
  std::shared_ptr<NodeTokensCache> node_cache_;
  size_t max_entries_;
  mutable std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> lru_;  // most recent first
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
  size_t hits_ = 0;
};

}  // namespace ds::grammar
