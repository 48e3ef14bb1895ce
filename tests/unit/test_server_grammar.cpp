// Structured-output fields through the API: response_format (json_schema, json_object), regex,
// ebnf and json_schema reach the engine as a compiled grammar (after </think> in thinking mode);
// bad schemas, unsupported keywords and two constraints at once are 400s naming the field.
#include <gtest/gtest.h>

#include "grammar/matcher.h"
#include "server_test_util.h"

namespace ds::server::testing {
namespace {

const Json kSchema = Json::parse(R"({"type":"object","properties":{"city":{"type":"string"},"n":{"type":"integer"}},
                                     "required":["city","n"],"additionalProperties":false})");

TEST(ServerGrammar, ConstraintsReachTheEngine) {
  Harness h;
  auto r = h.post("/v1/chat/completions",
                  user_chat("weather?", {{"max_tokens", 4}, {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "w"}, {"schema", kSchema}, {"strict", true}}}}}}));
  ASSERT_EQ(r->status, 200) << r->body;
  auto sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 1u);
  ASSERT_FALSE(sub[0].grammar.empty());
  EXPECT_TRUE(sub[0].grammar.trigger.empty());  // no thinking: the grammar starts at once
  EXPECT_TRUE(grammar::grammar_matches(sub[0].grammar.grammar, R"({"city": "Oslo", "n": 3})"));
  EXPECT_FALSE(grammar::grammar_matches(sub[0].grammar.grammar, R"({"city": "Oslo"})"));

  // Thinking: after </think>. n = 2: both choices constrained, one compiled grammar.
  r = h.post("/v1/chat/completions", user_chat("q", {{"max_tokens", 4}, {"chat_template_kwargs", {{"thinking", true}}}, {"n", 2},
                                                     {"response_format", {{"type", "json_object"}}}}));
  ASSERT_EQ(r->status, 200) << r->body;
  sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 3u);
  EXPECT_EQ(sub[1].grammar.trigger, h.tok.encode("</think>", false));
  EXPECT_EQ(sub[1].grammar.grammar, sub[2].grammar.grammar);
  EXPECT_TRUE(grammar::grammar_matches(sub[1].grammar.grammar, R"({"any": [1, true]})"));

  // SGLang's fields: regex in /generate, json_schema as text in /v1/completions, ebnf in chat.
  r = h.post("/generate", Json{{"text", "a"}, {"sampling_params", {{"regex", "[0-9]{3}"}, {"max_new_tokens", 4}}}});
  ASSERT_EQ(r->status, 200) << r->body;
  r = h.post("/v1/completions", Json{{"prompt", "a"}, {"max_tokens", 4}, {"json_schema", dump(kSchema)}});
  ASSERT_EQ(r->status, 200) << r->body;
  r = h.post("/v1/chat/completions", user_chat("x", {{"max_tokens", 4}, {"ebnf", "root ::= \"yes\" | \"no\""}}));
  ASSERT_EQ(r->status, 200) << r->body;
  sub = h.engine.submitted();
  ASSERT_EQ(sub.size(), 6u);
  EXPECT_TRUE(grammar::grammar_matches(sub[3].grammar.grammar, "123"));
  EXPECT_FALSE(grammar::grammar_matches(sub[3].grammar.grammar, "12a"));
  EXPECT_TRUE(grammar::grammar_matches(sub[4].grammar.grammar, R"({"city":"x","n":-1})"));
  EXPECT_TRUE(grammar::grammar_matches(sub[5].grammar.grammar, "no"));
  // The same schema text again: the compiled grammar comes from the cache.
  r = h.post("/v1/completions", Json{{"prompt", "b"}, {"max_tokens", 4}, {"json_schema", dump(kSchema)}});
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(h.engine.submitted()[6].grammar.grammar, sub[4].grammar.grammar);
}

TEST(ServerGrammar, BadConstraintsAre400NamingTheField) {
  Harness h;
  struct Case {
    std::string path;
    Json body;
    std::string param, needle;
  };
  const Json not_schema = Json::parse(R"({"type":"object","properties":{"a":{"not":{"type":"null"}}}})");
  const std::vector<Case> cases = {
      {"/v1/chat/completions", user_chat("x", {{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "n"}, {"schema", not_schema}}}}}}),
       "response_format.json_schema.schema", "'not'"},
      {"/v1/chat/completions", user_chat("x", {{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "n"}}}}}}),
       "response_format", "schema is required"},
      {"/v1/chat/completions", user_chat("x", {{"response_format", {{"type", "xml"}}}}), "response_format", "'xml'"},
      {"/v1/chat/completions", user_chat("x", {{"regex", "a"}, {"response_format", {{"type", "json_object"}}}}), "response_format",
       "only one of"},
      {"/v1/completions", Json{{"prompt", "a"}, {"json_schema", "{not json"}}, "json_schema", "not valid JSON"},
      {"/v1/completions", Json{{"prompt", "a"}, {"ebnf", "root ::= root \"a\""}}, "ebnf", "left-recursive"},
      {"/generate", Json{{"text", "a"}, {"sampling_params", {{"regex", "(?=a)b"}}}}, "sampling_params.regex", "lookahead"},
      {"/generate", Json{{"text", "a"}, {"sampling_params", {{"json_schema", Json::parse(R"({"type":"array","uniqueItems":true})")}}}},
       "sampling_params.json_schema", "'uniqueItems'"},
  };
  for (const auto& c : cases) {
    auto r = h.post(c.path, c.body);
    ASSERT_EQ(r->status, 400) << dump(c.body) << " -> " << r->body;
    Json e = body_json(*r);
    EXPECT_EQ(e["error"]["param"], c.param) << r->body;
    EXPECT_NE(e["error"]["message"].get<std::string>().find(c.needle), std::string::npos) << r->body;
  }
  EXPECT_TRUE(h.engine.submitted().empty());
}

}  // namespace
}  // namespace ds::server::testing
