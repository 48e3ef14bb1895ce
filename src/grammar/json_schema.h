// JSON Schema -> Grammar: the subset that OpenAI structured outputs and xgrammar accept.
//
// Supported: type (one or a list), enum, const, anyOf / oneOf (as anyOf), allOf of one schema,
// $ref to "#", "#/$defs/..." and "#/definitions/..." (recursion allowed), objects (properties in
// the order given, required, additionalProperties false / true / a schema), arrays (items,
// prefixItems, minItems, maxItems), strings (minLength, maxLength, pattern matched against the
// whole string, format: date, time, date-time, uuid, ipv4, email), integers (minimum, maximum,
// exclusiveMinimum, exclusiveMaximum), numbers, booleans, null. Annotations (title, description,
// default, examples, $schema, $id, $comment, ...) are ignored.
//
// Choices that differ from a general JSON Schema validator, as in xgrammar's strict mode:
// - an object with `properties` and no `additionalProperties` allows no other keys;
// - properties appear in the order the schema lists them; extra keys (when allowed) after them,
//   not checked against the listed names;
// - whitespace between tokens is free as in JSON; `max_whitespace` can limit it per gap (a
//   model free to add whitespace forever sometimes does), at some cost in mask time;
//   `fixed_separators` leaves none free.
// Any other keyword is an error that names it (ds::Error "unsupported JSON Schema keyword ...").
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "grammar/expr.h"

namespace ds::grammar {

struct JsonGrammarOptions {
  int max_whitespace = -1;  // bytes of [ \t\n\r] between two tokens; < 0: unlimited
  // No free whitespace: members and items separated by ", ", keys by ": ", nothing else (xgrammar's
  // any_whitespace = false; SGLang's --constrained-json-disable-any-whitespace). Keys of a schema with
  // fixed properties are then forced text, which jump-forward decoding appends at once.
  bool fixed_separators = false;
  // '<' inside strings only as "\u003c", so the text never holds "</": for JSON inside markup
  // whose parser ends an element at the first "</" (the DSML tool-call block).
  bool escape_lt = false;
};

Grammar json_schema_grammar(std::string_view schema_json, const JsonGrammarOptions& options = {});

class SchemaCompiler;
class JsonRules;

// Schemas compiled into a Grammar that another front end builds (the DSML tool-call grammar,
// whose parameters are JSON values): `root` is the document its $refs resolve against and must
// outlive this object; value() adds the rules of a schema inside it and returns its expression.
// `shared`: the JSON pieces to use (one set for several documents in one grammar, so their string
// and number rules are compiled once); it must outlive this object and have the same options.
class SchemaValues {
 public:
  SchemaValues(Grammar& g, const nlohmann::ordered_json& root, const JsonGrammarOptions& options = {},
               JsonRules* shared = nullptr);
  ~SchemaValues();
  // One JSON value of `schema`, no whitespace around it; throws like json_schema_grammar.
  ExprPtr value(const nlohmann::ordered_json& schema, const std::string& path);
  JsonRules& json();  // the shared JSON pieces (any value, strings, ...) of this grammar

 private:
  std::unique_ptr<SchemaCompiler> impl_;
};

// Any JSON object (response_format json_object).
Grammar json_object_grammar(const JsonGrammarOptions& options = {});
// Any JSON value.
Grammar json_value_grammar(const JsonGrammarOptions& options = {});

}  // namespace ds::grammar
