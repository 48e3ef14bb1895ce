// Structured-output parameters of a request: OpenAI's `response_format` (json_schema, json_object,
// text) and SGLang's `regex`, `ebnf` and `json_schema` (top level of the OpenAI bodies, or in
// /generate's sampling_params), read into one GrammarSpec; compiled once per distinct text by a
// compiler built on first use from the server's tokenizer; attached to the engine requests. A bad
// or unsupported schema / pattern / grammar is a 400 that names the field and the keyword.
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "grammar/grammar_compiler.h"
#include "runtime/engine.h"
#include "server/json_fields.h"

namespace ds::tok {
class Tokenizer;
}

namespace ds::server {

struct GrammarRequest {
  grammar::GrammarSpec spec;
  std::string field;  // where it came from, for errors ("response_format", "sampling_params.regex")
};

// Reads the constraint fields of `f` (at most one may be set; 400 otherwise). `response_format`
// is read only when allow_response_format (the OpenAI bodies).
std::optional<GrammarRequest> read_grammar_fields(const Fields& f, bool allow_response_format);

// One per server: the vocabulary table and the compiled-grammar cache, made on first use.
class ServerGrammars {
 public:
  ServerGrammars() = default;
  // How JSON grammars are written (--constrained-json-disable-any-whitespace: fixed separators).
  explicit ServerGrammars(grammar::JsonGrammarOptions json) : json_(json) {}
  std::shared_ptr<const grammar::CompiledGrammar> compile(const tok::Tokenizer& tok, const GrammarRequest& req);

 private:
  grammar::JsonGrammarOptions json_;
  std::once_flag once_;
  std::unique_ptr<grammar::GrammarCompiler> compiler_;
};

// tool_choice "required" / a named function under the deepseekv32 tool-call parser: the whole call
// block, each call to one of `names` (from the request's OpenAI `tools`) with arguments under its
// `parameters` schema (grammar/dsml_tool_grammar.h); one call only unless `parallel`. With
// `optional_block` (tool_choice "auto" with strict tools) free text comes first and the block may
// be left out; a block that is written follows the schemas.
GrammarRequest tool_call_grammar(const Json& tools, const std::vector<std::string>& names, bool parallel,
                                 bool optional_block = false);

// Whether some function of the OpenAI `tools` list has "strict": true.
bool has_strict_tool(const Json& tools);

// Compiles the request's constraint (400 on error) and attaches it to every engine request; with
// starts_in_reasoning the grammar applies after the tokens of </think>.
void attach_grammar(ServerGrammars& grammars, const tok::Tokenizer& tok, const std::optional<GrammarRequest>& req,
                    bool starts_in_reasoning, std::vector<runtime::GenerateRequest>& requests);

}  // namespace ds::server
