// JSON Schema grammars: a suite of schemas with valid and invalid documents, documents drawn from
// each grammar checked by parsing and by an independent validator (json_schema_oracle.h), and the
// errors for unsupported keywords.
#include <gtest/gtest.h>

#include <random>

#include "grammar_test_util.h"
#include "json_schema_oracle.h"
#include "util/error.h"

namespace ds::grammar {
namespace {

struct Case {
  const char* name;
  const char* schema;
  std::vector<std::string> valid;
  std::vector<std::string> invalid;
};

const std::vector<Case>& suite() {
  static const std::vector<Case> cases = {
      {"strict_object", R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false})",
       {R"({"name":"Bo","age":3})", R"({ "name" : "a\"b\u00e9\n" , "age" : -12 })", "{\n  \"name\": \"\",\n  \"age\": 0\n}"},
       {R"({"age":3,"name":"Bo"})", R"({"name":"Bo"})", R"({"name":"Bo","age":3.5})", R"({"name":"Bo","age":3,"x":1})",
        R"({"name":"Bo","age":03})", R"({"name":'Bo',"age":3})", "{\"name\":\"a\nb\",\"age\":1}", R"({"name":"Bo","age":3,})"}},
      {"optional_props", R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"},"c":{"type":"null"}},"required":["b"]})",
       {R"({"b":true})", R"({"a":1,"b":false})", R"({"b":true,"c":null})", R"({"a":1,"b":true,"c":null})"},
       {R"({})", R"({"a":1})", R"({"a":1,"c":null})", R"({"b":true,"a":1})", R"({,"b":true})", R"({"b":true,})"}},
      {"all_optional", R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}})",
       {R"({})", R"({"a":1})", R"({"b":2})", R"({"a":1,"b":2})", R"({ })"},
       {R"({"b":2,"a":1})", R"({"a":1,})", R"({,})", R"({"c":1})"}},
      {"additional_schema", R"({"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],"additionalProperties":{"type":"string"}})",
       {R"({"id":1})", R"({"id":1,"x":"y","z":""})"}, {R"({"id":1,"x":2})", R"({"x":"y","id":1})"}},
      {"any_object", R"({"type":"object"})", {R"({})", R"({"k":[1,{"x":null}],"j":"s"})"}, {R"([])", R"({"k"})", R"({1:2})"}},
      {"array_bounds", R"({"type":"array","items":{"type":"number"},"minItems":1,"maxItems":3})",
       {R"([0])", R"([1.5, -2e10, 3E-2])", R"([ 0 ])"}, {R"([])", R"([1,2,3,4])", R"([1,])", R"(["a"])", R"([01])", R"([1.])", R"([.5])"}},
      {"prefix_items", R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false,"minItems":1})",
       {R"(["a"])", R"(["a",1])"}, {R"([])", R"([1])", R"(["a","b"])", R"(["a",1,2])"}},
      {"enum_const", R"({"type":"object","properties":{"color":{"enum":["red","green",null,7]},"v":{"const":{"x":[1,"é"]}}},"required":["color","v"],"additionalProperties":false})",
       {R"({"color":"red","v":{"x":[1,"é"]}})", R"({"color":null,"v":{"x":[1,"é"]}})", R"({"color":7,"v":{"x":[1,"é"]}})"},
       {R"({"color":"blue","v":{"x":[1,"é"]}})", R"({"color":"red","v":{"x":[1]}})"}},
      {"any_of", R"({"anyOf":[{"type":"string","maxLength":2},{"type":"integer","minimum":10,"maximum":12},{"type":"array","items":{"$ref":"#/$defs/leaf"}}],"$defs":{"leaf":{"type":"boolean"}}})",
       {R"("ab")", R"("")", R"(10)", R"(12)", R"([true,false])", R"([])"}, {R"("abc")", R"(9)", R"(13)", R"(-10)", R"([1])", R"(null)"}},
      {"type_list", R"({"type":["string","null"]})", {R"("x")", R"(null)"}, {R"(1)", R"(nul)"}},
      {"recursive", R"({"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v","kids"],"additionalProperties":false}}})",
       {R"({"v":1,"kids":[]})", R"({"v":1,"kids":[{"v":2,"kids":[{"v":3,"kids":[]}]}]})"}, {R"({"v":1})", R"({"v":1,"kids":[{"v":2}]})"}},
      {"self_ref", R"({"type":"object","properties":{"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},"required":["next"],"additionalProperties":false})",
       {R"({"next":null})", R"({"next":{"next":null}})"}, {R"({"next":{}})"}},
      {"int_ranges", R"({"type":"array","items":{"type":"integer","minimum":-120,"exclusiveMaximum":1005}})",
       {R"([-120,-1,0,9,99,100,999,1004])"}, {R"([-121])", R"([1005])", R"([-0])", R"([007])"}},
      {"int_min_only", R"({"type":"integer","minimum":37})", {R"(37)", R"(99)", R"(100)", R"(1234567890123456)"}, {R"(36)", R"(-40)", R"(0)"}},
      {"int_max_negative", R"({"type":"integer","maximum":-5})", {R"(-5)", R"(-1234)"}, {R"(-4)", R"(0)", R"(5)"}},
      {"string_pattern", R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}(\"x\")?$"})", {R"("AB-123")", R"("ZZ-000\"x\"")"}, {R"("AB-12")", R"("ab-123")", R"("AB-123"x"")"}},
      {"string_formats", R"({"type":"array","prefixItems":[{"type":"string","format":"date"},{"type":"string","format":"date-time"},{"type":"string","format":"uuid"},{"type":"string","format":"ipv4"},{"type":"string","format":"email"}],"items":false})",
       {R"(["2024-02-29","2024-02-29T23:59:60.5+01:00","123e4567-e89b-12d3-a456-426614174000","192.168.0.255","a.b@ex-ample.com"])"},
       {R"(["2024-13-01","2024-02-29T24:00:00Z","123e4567-e89b-12d3-a456-42661417400","256.1.1.1","a@b"])"}},
      {"string_lengths", R"({"type":"string","minLength":2,"maxLength":3})", {R"("ab")", R"("日本語")", R"("a\nb")"}, {R"("a")", R"("abcd")"}},
      {"untyped_any", R"({})", {R"(1)", R"({"a":[true,null]})", R"("s")"}, {R"(tru)", R"({"a":})"}},
  };
  return cases;
}

// JSON numbers beyond the double range are valid JSON, but nlohmann refuses them: such exponents
// are shortened before parsing (only for that error).
testing::OJson parse_json(const std::string& doc) {
  try {
    return testing::OJson::parse(doc);
  } catch (const nlohmann::json::out_of_range&) {
    std::string s;
    for (size_t i = 0; i < doc.size(); ++i) {
      s += doc[i];
      if ((doc[i] == 'e' || doc[i] == 'E') && i > 0 && std::isdigit(uint8_t(doc[i - 1]))) {
        if (i + 1 < doc.size() && (doc[i + 1] == '+' || doc[i + 1] == '-')) s += doc[++i];
        size_t j = i + 1;
        while (j < doc.size() && std::isdigit(uint8_t(doc[j]))) ++j;
        s += '1';
        i = j - 1;
      }
    }
    return testing::OJson::parse(s);
  }
}

std::shared_ptr<const CompiledGrammar> schema_grammar(const std::string& schema) {
  return testing::compile_spec(GrammarKind::JsonSchema, schema);
}

TEST(GrammarJsonSchema, SuiteValidAndInvalidDocuments) {
  for (const Case& c : suite()) {
    SCOPED_TRACE(c.name);
    auto g = schema_grammar(c.schema);
    const auto schema = testing::OJson::parse(c.schema);
    for (const std::string& doc : c.valid) {
      EXPECT_TRUE(grammar_matches(g, doc)) << "valid: " << doc;
      EXPECT_TRUE(testing::validate(schema, testing::OJson::parse(doc), schema)) << "oracle disagrees with the suite: " << doc;
    }
    for (const std::string& doc : c.invalid) EXPECT_FALSE(grammar_matches(g, doc)) << "invalid: " << doc;
  }
}

TEST(GrammarJsonSchema, DrawnDocumentsParseAndValidate) {
  std::mt19937 rng(5);
  for (const Case& c : suite()) {
    SCOPED_TRACE(c.name);
    auto g = schema_grammar(c.schema);
    const auto schema = testing::OJson::parse(c.schema);
    int drawn = 0;
    for (int i = 0; i < 80; ++i) {
      auto doc = testing::sample(g, rng, 300, 0.6);
      if (!doc) continue;
      ++drawn;
      testing::OJson parsed;
      try {
        parsed = parse_json(*doc);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "does not parse: " << *doc << " (" << e.what() << ")";
        continue;
      }
      EXPECT_TRUE(testing::validate(schema, parsed, schema)) << "does not validate: " << *doc;
    }
    EXPECT_GT(drawn, 10);
  }
}

TEST(GrammarJsonSchema, JsonObjectMode) {
  auto g = testing::compile_spec(GrammarKind::JsonObject, "");
  EXPECT_TRUE(grammar_matches(g, R"({"a":[1,2.5e-3,{"b":null}],"c":"\u00e9"})"));
  EXPECT_TRUE(grammar_matches(g, " {} "));
  EXPECT_FALSE(grammar_matches(g, "[]"));
  EXPECT_FALSE(grammar_matches(g, R"({"a":1)"));
  std::mt19937 rng(9);
  for (int i = 0; i < 50; ++i)
    if (auto doc = testing::sample(g, rng, 300, 0.6)) {
      EXPECT_NO_THROW(parse_json(*doc)) << *doc;
    }
}

TEST(GrammarJsonSchema, ErrorsNameTheKeyword) {
  auto err = [](const std::string& schema) {
    try {
      GrammarCompiler::build(GrammarSpec{GrammarKind::JsonSchema, schema});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"not":{"type":"string"}})", "'not'"},
      {R"({"type":"object","patternProperties":{"a":{}}})", "'patternProperties'"},
      {R"({"type":"array","uniqueItems":true})", "'uniqueItems'"},
      {R"({"type":"object","properties":{"a":{"type":"string","if":{}}}})", "'if'"},
      {R"({"type":"object","minProperties":1})", "'minProperties'"},
      {R"({"type":"number","minimum":0})", "'minimum'"},
      {R"({"type":"integer","multipleOf":2})", "'multipleOf'"},
      {R"({"type":"string","format":"hostname"})", "'hostname'"},
      {R"({"$ref":"http://x/y.json"})", "'$ref'"},
      {R"({"$ref":"#/$defs/missing"})", "not found"},
      {R"({"type":"strin"})", "unknown type 'strin'"},
      {R"({"type":"object","required":["a"]})", "required property 'a'"},
      {R"J({"type":"string","pattern":"(?=x)"})J", "lookahead"},
      {R"({"type":"integer","minimum":5,"maximum":4})", "empty"},
      {R"({"type":"object",)", "not valid JSON"},
  };
  for (const auto& [schema, needle] : cases) EXPECT_NE(err(schema).find(needle), std::string::npos) << schema << " -> " << err(schema);
  EXPECT_NE(err(R"({"properties":{"a":{"items":{"contains":{}}}}})").find("#/properties/a/items"), std::string::npos);
}

}  // namespace
}  // namespace ds::grammar
