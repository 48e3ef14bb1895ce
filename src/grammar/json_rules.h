// The building blocks of JSON grammars (json_schema.cpp): whitespace, strings (and their
// characters as JSON writes them), numbers, integer ranges, any value, string formats. Each
// shared piece is one rule of the Grammar, made on first use.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "grammar/expr.h"
#include "grammar/json_schema.h"

namespace ds::grammar {

class JsonRules {
 public:
  JsonRules(Grammar& g, const JsonGrammarOptions& opt) : g_(g), opt_(opt) {}

  ExprPtr ws();
  ExprPtr string();   // any JSON string
  ExprPtr number();   // any JSON number
  ExprPtr integer();  // -?(0|[1-9][0-9]*)
  ExprPtr boolean() { return alt({literal("true"), literal("false")}); }
  ExprPtr null() { return literal("null"); }
  ExprPtr value();        // any JSON value
  ExprPtr any_object();   // any JSON object
  ExprPtr any_array();    // any JSON array
  // A member separator and the colon, with whitespace around them.
  ExprPtr comma() { return opt_.fixed_separators ? literal(", ") : seq({ws(), literal(","), ws()}); }
  ExprPtr colon() { return opt_.fixed_separators ? literal(": ") : seq({ws(), literal(":"), ws()}); }

  // One character of the string's content: unescaped UTF-8, or an escape.
  ExprPtr string_char();
  // One character of `set`, written as inside a JSON string (escaped where JSON requires it;
  // with escape_lt '<' too, as \u003c).
  static ExprPtr json_chars(const CodepointRanges& set, bool escape_lt = false);
  // A quoted string whose content is `content` (an expression over the written characters).
  static ExprPtr quoted(ExprPtr content) { return seq({literal("\""), std::move(content), literal("\"")}); }
  // Integers in [lo, hi] (either side open when absent), in JSON's canonical form.
  static ExprPtr integer_range(std::optional<int64_t> lo, std::optional<int64_t> hi);
  // The content of a string of this format (date, time, date-time, uuid, ipv4, email); throws
  // naming the format if unsupported.
  static ExprPtr string_format(const std::string& format);
  // Rules from index `count` on were dropped from the grammar: forget the shared ones among them.
  void forget_rules_from(int count);

 private:
  int rule(const std::string& name, ExprPtr body);
  Grammar& g_;
  JsonGrammarOptions opt_;
  int ws_ = -1, string_ = -1, number_ = -1, integer_ = -1, value_ = -1, object_ = -1, array_ = -1;
};

}  // namespace ds::grammar
