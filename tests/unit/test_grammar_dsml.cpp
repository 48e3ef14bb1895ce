// The DSML tool-call grammar (grammar/dsml_tool_grammar.h): random sentences drawn through its
// token masks are read back by the deepseekv32 tool parser as calls to the allowed tools whose
// arguments validate against their schemas (the JSON Schema oracle); the canonical encoder text
// is accepted; wrong names, missing required or unknown parameters, bad enum values and "</" in
// a value are refused; strict tools with unsupported keywords are errors, others get free params.
#include <gtest/gtest.h>

#include <map>

#include "chat/tool_parser.h"
#include "grammar/dsml_tool_grammar.h"
#include "grammar_test_util.h"
#include "json_schema_oracle.h"
#include "util/error.h"

namespace ds::grammar::testing {
namespace {

const OJson kWeather = OJson::parse(R"({"type":"object","properties":{
  "city":{"type":"string","description":"free text, written raw"},
  "unit":{"type":"string","enum":["celsius","fahrenheit"]},
  "days":{"type":"integer","minimum":1,"maximum":7},
  "when":{"type":"string","format":"date"},
  "opts":{"type":"object","properties":{"hourly":{"type":"boolean"},"note":{"type":"string","maxLength":5}},"required":["hourly"]},
  "tags":{"type":"array","items":{"$ref":"#/$defs/tag"},"maxItems":3},
  "code":{"type":"string","pattern":"[a-z]{2}<[0-9]"},
  "nick":{"type":"string","minLength":2,"maxLength":4}},
  "required":["city","days"],"additionalProperties":false,
  "$defs":{"tag":{"enum":["a b"," lead","x</y"]}}})");
// Not an object with properties at its top: written as one JSON object in the invoke.
const OJson kAnyOf = OJson::parse(R"({"anyOf":[{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],
  "additionalProperties":false},{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],"additionalProperties":false}]})");

std::string spec(const std::vector<std::pair<std::string, OJson>>& tools, bool parallel = true, bool strict = false,
                 bool optional = false) {
  OJson s = {{"tools", OJson::array()}, {"parallel", parallel}};
  if (optional) s["optional"] = true;
  for (const auto& [name, params] : tools) {
    OJson t = {{"name", name}, {"strict", strict}};
    if (!params.is_null()) t["parameters"] = params;
    s["tools"].push_back(t);
  }
  return s.dump();
}

// Tag-sized pieces and a few content bytes: small enough that random draws finish.
std::shared_ptr<const TokenTable> dsml_vocab() {
  std::vector<std::string> t;
  std::string bytes = "<>/\"=\n {}[],:-.0123456789abcdefghijklmnopqrstuvwxyzADLMST_\\";
  bytes += "\xef\xbd\x9c";  // the bytes of '｜'
  for (char c : bytes) t.push_back(std::string(1, c));
  for (const char* s : {"\n\n<｜DSML｜function_calls>\n", "\n</｜DSML｜function_calls>", "<｜DSML｜invoke name=\"",
                        "\n</｜DSML｜invoke>", "<｜DSML｜parameter name=\"", "</｜DSML｜parameter>", "\" string=\"true\">",
                        "\" string=\"false\">", "true", "false", "null", "\\u003c", "é", "\"}", "celsius", "a b", "x</y"})
    t.push_back(s);
  t.push_back("");  // stop
  const int32_t stop = int32_t(t.size()) - 1;
  return TokenTable::from_bytes(std::move(t), {stop});
}

struct Call {
  std::string name;
  OJson args;
};

// The whole text through the deepseekv32 parser: the calls, and the content (must be empty).
std::vector<Call> parse_calls(const std::string& text, std::string& content) {
  auto p = chat::make_tool_parser("deepseekv32", {});
  chat::ToolParseStep a = p->feed(text), b = p->finish();
  content = a.content + b.content;
  std::map<int, Call> by_index;
  for (const auto* step : {&a, &b})
    for (const auto& d : step->calls) {
      if (d.name) by_index[d.index].name = *d.name;
      if (!d.arguments.empty()) by_index[d.index].args = OJson::parse(d.arguments);
    }
  std::vector<Call> out;
  for (auto& [i, c] : by_index) out.push_back(std::move(c));
  return out;
}

TEST(DsmlToolGrammar, RandomCallsParseAndValidate) {
  const std::map<std::string, OJson> tools = {{"get_weather", kWeather}, {"lookup", kAnyOf}, {"ping", OJson()}};
  auto g = compile_spec(GrammarKind::DsmlToolCalls, spec({tools.begin(), tools.end()}), dsml_vocab());
  std::mt19937 rng(11);
  int finished = 0, calls = 0;
  std::map<std::string, int> per_tool;
  for (int i = 0; i < 60; ++i) {
    auto text = sample(g, rng, 3000, 0.5);
    if (!text) continue;
    ++finished;
    std::string content;
    std::vector<Call> got = parse_calls(*text, content);
    EXPECT_EQ(content, "") << *text;
    ASSERT_GE(got.size(), 1u) << *text;
    for (const Call& c : got) {
      ASSERT_TRUE(tools.count(c.name)) << c.name;
      ++per_tool[c.name];
      ++calls;
      ASSERT_TRUE(c.args.is_object()) << *text;
      const OJson& schema = tools.at(c.name);
      if (!schema.is_null()) EXPECT_TRUE(validate(schema, c.args, schema)) << c.args.dump() << "\nfrom\n" << *text;
    }
  }
  std::printf("%d of 60 sentences finished: %d calls (get_weather %d, lookup %d, ping %d)\n", finished, calls,
              per_tool["get_weather"], per_tool["lookup"], per_tool["ping"]);
  EXPECT_GE(finished, 20);
  EXPECT_GE(per_tool["get_weather"], 5);
  EXPECT_GE(per_tool["lookup"], 5);
  EXPECT_GE(calls, finished);
}

TEST(DsmlToolGrammar, CanonicalTextIsAcceptedAndMistakesAreNot) {
  auto g = compile_spec(GrammarKind::DsmlToolCalls, spec({{"get_weather", kWeather}, {"lookup", kAnyOf}}));
  const std::string open = "\n\n<｜DSML｜function_calls>\n", close = "\n</｜DSML｜function_calls>";
  auto param = [](const std::string& k, bool raw, const std::string& v) {
    return "<｜DSML｜parameter name=\"" + k + "\" string=\"" + (raw ? "true" : "false") + "\">" + v + "</｜DSML｜parameter>";
  };
  auto invoke = [](const std::string& name, const std::string& body) {
    return "<｜DSML｜invoke name=\"" + name + "\">\n" + body + "\n</｜DSML｜invoke>";
  };
  const std::string weather = invoke("get_weather", param("city", true, "Hang zhou <b> a<<c") + "\n" + param("days", false, "3"));
  EXPECT_TRUE(grammar_matches(g, open + weather + close));
  const std::string full =
      invoke("get_weather", param("city", true, "Oslo") + "\n" + param("unit", true, "celsius") + "\n" + param("days", false, "7") +
                                "\n" + param("when", true, "2026-12-02") + "\n" + param("opts", false, "{\"hourly\": true}") + "\n" +
                                param("tags", false, "[\"a b\", \" lead\", \"x\\u003c/y\"]") + "\n" + param("code", false, "\"ab\\u003c1\"") +
                                "\n" + param("nick", true, "é x"));
  EXPECT_TRUE(grammar_matches(g, open + full + "\n" + invoke("lookup", "{\"id\": 12}") + close));
  // Parallel calls are one block; the parser reads all of them back.
  std::string content;
  auto calls = parse_calls(open + full + "\n" + invoke("lookup", "{\"id\": 12}") + close, content);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(validate(kWeather, calls[0].args, kWeather)) << calls[0].args.dump();
  EXPECT_EQ(calls[0].args["tags"][2], "x</y");
  EXPECT_EQ(calls[1].args, OJson::parse(R"({"id": 12})"));

  for (const std::string& bad : {
           open + invoke("get_wether", param("city", true, "Oslo") + "\n" + param("days", false, "3")) + close,  // unknown tool
           open + invoke("get_weather", param("city", true, "Oslo")) + close,                                   // days missing
           open + invoke("get_weather", param("days", false, "3") + "\n" + param("city", true, "Oslo")) + close,  // out of order
           open + invoke("get_weather", param("city", true, "Oslo") + "\n" + param("days", false, "8")) + close,  // > maximum
           open + invoke("get_weather", param("city", true, "Oslo") + "\n" + param("days", false, "3") + "\n" + param("x", true, "1")) + close,
           open + invoke("get_weather", param("city", true, "a</b") + "\n" + param("days", false, "3")) + close,  // "</" in raw text
           open + invoke("get_weather", param("city", true, "Oslo") + "\n" + param("unit", true, "kelvin") + "\n" + param("days", false, "3")) + close,
           open + invoke("get_weather", param("city", true, "Oslo") + "\n" + param("days", false, "3") + "\n" +
                         param("tags", false, "[\"x</y\"]")) + close,  // '<' must be escaped in JSON
           open + invoke("get_weather", param("city", false, "\"Oslo\"") + "\n" + param("days", false, "3")) + close,  // strings raw
           open + invoke("lookup", "{\"q\": \"a\", \"id\": 1}") + close,
           open + weather,  // unclosed
           open + invoke("get_weather", param("city", true, "Oslo") + "\n" + param("days", false, "3") + "\n" + param("nick", true, "abcde")) + close,
           open + invoke("get_weather", param("city", true, "Oslo") + "\n" + param("days", false, "3") + "\n" + param("nick", true, " ab")) + close,
       })
    EXPECT_FALSE(grammar_matches(g, bad)) << bad;
  // Only one call when parallel calls are off.
  auto single = compile_spec(GrammarKind::DsmlToolCalls, spec({{"get_weather", kWeather}, {"lookup", kAnyOf}}, false));
  EXPECT_TRUE(grammar_matches(single, open + weather + close));
  EXPECT_FALSE(grammar_matches(single, open + weather + "\n" + invoke("lookup", "{\"id\": 1}") + close));
}

// tool_choice "auto" with strict tools: free text, then maybe one block whose calls follow the
// schemas. Random sentences (the vocabulary has the block's opener as one token, so some open it)
// either hold no call and no opener, or calls that validate.
TEST(DsmlToolGrammar, OptionalBlockAfterFreeText) {
  const std::map<std::string, OJson> tools = {{"get_weather", kWeather}, {"ping", OJson()}};
  auto g = compile_spec(GrammarKind::DsmlToolCalls, spec({tools.begin(), tools.end()}, true, true, true), dsml_vocab());
  std::mt19937 rng(5);
  int with_calls = 0, without = 0;
  for (int i = 0; i < 80; ++i) {
    auto text = sample(g, rng, 3000, 0.02);
    if (!text) continue;
    std::string content;
    std::vector<Call> got = parse_calls(*text, content);
    const size_t open = text->find("<｜DSML｜function_calls>");
    EXPECT_EQ(text->find("<function_calls>"), std::string::npos) << *text;
    if (got.empty()) {
      ++without;
      EXPECT_EQ(open, std::string::npos) << *text;
      continue;
    }
    ++with_calls;
    ASSERT_NE(open, std::string::npos) << *text;
    EXPECT_EQ(text->substr(open - 2, 2), "\n\n") << *text;
    EXPECT_TRUE(text->ends_with("</｜DSML｜function_calls>")) << *text;
    for (const Call& c : got) {
      ASSERT_TRUE(tools.count(c.name)) << c.name;
      const OJson& schema = tools.at(c.name);
      if (!schema.is_null()) EXPECT_TRUE(validate(schema, c.args, schema)) << c.args.dump() << "\nfrom\n" << *text;
    }
  }
  std::printf("%d sentences with calls, %d without\n", with_calls, without);
  EXPECT_GE(with_calls, 10);
  EXPECT_GE(without, 10);

  const std::string open = "\n\n<｜DSML｜function_calls>\n", close = "\n</｜DSML｜function_calls>";
  const std::string ping = "<｜DSML｜invoke name=\"ping\">\n\n</｜DSML｜invoke>";
  const std::string weather = "<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Oslo"
                              "</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>";
  for (const std::string& good : {std::string(), std::string("Sure, <b>no</b> call: a < b, <function_call <｜DSML｜invoke"),
                                   std::string("<<function_calls<"), "Let me check." + open + weather + close, open + weather + close,
                                   "x <｜DSML｜function_calls" + open + ping + "\n" + weather + close})
    EXPECT_TRUE(grammar_matches(g, good)) << good;
  for (const std::string& bad : {std::string("a<function_calls>b"), std::string("<｜DSML｜function_calls>"),
                                 "text" + open + "<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Oslo"
                                                 "</｜DSML｜parameter>\n</｜DSML｜invoke>" + close,  // days missing
                                 "text" + open + weather,                                               // unclosed
                                 "text" + open + weather + close + "more text",                        // text after the block
                                 "text<function_calls>\n" + weather + "\n</function_calls>"})           // the other opener
    EXPECT_FALSE(grammar_matches(g, bad)) << bad;
}

TEST(DsmlToolGrammar, UnsupportedSchemas) {
  const OJson odd = OJson::parse(R"({"type":"object","properties":{"a":{"type":"string","not":{"const":"x"}}},"required":["a"]})");
  // Not strict: that tool's parameters are free (any names, raw or JSON values).
  auto g = compile_spec(GrammarKind::DsmlToolCalls, spec({{"odd", odd}}));
  EXPECT_TRUE(grammar_matches(g, "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"odd\">\n<｜DSML｜parameter name=\"zz\" "
                                 "string=\"false\">[1, {\"k\": null}]</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>"));
  // Strict: an error naming the tool and the keyword.
  try {
    GrammarCompiler::build({GrammarKind::DsmlToolCalls, spec({{"odd", odd}}, true, true)});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'odd'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'not'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(GrammarCompiler::build({GrammarKind::DsmlToolCalls, R"({"tools":[]})"}), Error);
  EXPECT_THROW(GrammarCompiler::build({GrammarKind::DsmlToolCalls, R"({"tools":[{"name":"a\"b"}]})"}), Error);
}

}  // namespace
}  // namespace ds::grammar::testing
