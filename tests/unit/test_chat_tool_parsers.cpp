// Tool-call parsers deepseekv32 (DSML) and deepseekv31: formats from the spec and SGLang's
// detectors, malformed output kept as content, and every chunking equal to the one-shot parse.
#include <gtest/gtest.h>

#include "chat/tool_parser.h"
#include "util/error.h"
#include "chat_stream_check.h"

using namespace ds::chat;

namespace {

ParsedMessage v32(const std::string& text, std::vector<std::string> names = {}, bool reasoning = false) {
  OutputParserOptions opt;
  opt.tool_parser = "deepseekv32";
  opt.tool_names = std::move(names);
  opt.starts_in_reasoning = reasoning;
  return test::parse_all_ways(opt, text);
}

ParsedMessage v31(const std::string& text, std::vector<std::string> names = {}) {
  OutputParserOptions opt;
  opt.tool_parser = "deepseekv31";
  opt.tool_names = std::move(names);
  return test::parse_all_ways(opt, text);
}

const std::string kGoldCall =
    "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_datetime\">\n"
    "<｜DSML｜parameter name=\"timezone\" string=\"true\">Asia/Shanghai</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜function_calls>";

}  // namespace

TEST(ChatToolV32, CanonicalDsmlCall) {
  auto m = v32(kGoldCall, {"get_datetime"});
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_datetime");
  EXPECT_EQ(m.tool_calls[0].arguments, "{\"timezone\": \"Asia/Shanghai\"}");
}

TEST(ChatToolV32, TextThenSeveralCallsWithTypedParameters) {
  auto m = v32("Let me check both.\n\n<｜DSML｜function_calls>\n"
               "<｜DSML｜invoke name=\"get_weather\">\n"
               "<｜DSML｜parameter name=\"location\" string=\"true\">杭州</｜DSML｜parameter>\n"
               "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
               "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"unit\": \"C\", \"hourly\": [1, 2]}</｜DSML｜parameter>\n"
               "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"get_weather\">\n"
               "<｜DSML｜parameter name=\"location\" string=\"true\">北京</｜DSML｜parameter>\n"
               "<｜DSML｜parameter name=\"flag\" string=\"false\">not json</｜DSML｜parameter>\n"
               "</｜DSML｜invoke>\n</｜DSML｜function_calls>");
  EXPECT_EQ(m.content, "Let me check both.");
  ASSERT_EQ(m.tool_calls.size(), 2u);
  EXPECT_EQ(m.tool_calls[0].arguments,
            "{\"location\": \"杭州\", \"days\": 3, \"opts\": {\"unit\": \"C\", \"hourly\": [1, 2]}}");
  EXPECT_EQ(m.tool_calls[1].arguments, "{\"location\": \"北京\", \"flag\": \"not json\"}");
}

TEST(ChatToolV32, PlainTagsJsonBodiesAndMixedSpellings) {
  auto m = v32("<function_calls>\n<invoke name=\"a\">\n{\"x\": 1, \"y\": \"z\"}\n</invoke>\n"
               "<｜DSML｜invoke name=\"b\">\n<parameter name=\"k\" string=\"true\"> v </｜DSML｜parameter>\n</invoke>\n"
               "<invoke name=\"c\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>");
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 3u);
  EXPECT_EQ(m.tool_calls[0].arguments, "{\"x\": 1, \"y\": \"z\"}");
  EXPECT_EQ(m.tool_calls[1].arguments, "{\"k\": \"v\"}");  // string values stripped, as SGLang does
  EXPECT_EQ(m.tool_calls[2].arguments, "{}");               // a call without arguments
}

TEST(ChatToolV32, ThinkingOutputThroughTheWholePipeline) {
  auto m = v32("I need the date.</think>" + kGoldCall, {"get_datetime"}, /*reasoning=*/true);
  EXPECT_EQ(m.reasoning_content, "I need the date.");
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 1u);
}

TEST(ChatToolV32, UnknownToolAndBrokenBlocksStayContent) {
  auto unknown = v32(kGoldCall, {"other_tool"});
  EXPECT_TRUE(unknown.tool_calls.empty());
  EXPECT_EQ(unknown.content, kGoldCall);

  const std::string fake = "Use <function_calls> tags like <b>this</b> & a < b.";
  auto m = v32(fake);
  EXPECT_TRUE(m.tool_calls.empty());
  EXPECT_EQ(m.content, fake);

  const std::string junk_body =
      "x\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\nfree text\n</｜DSML｜invoke>\n</｜DSML｜function_calls>";
  auto j = v32(junk_body);
  EXPECT_TRUE(j.tool_calls.empty());
  EXPECT_EQ(j.content, junk_body);
}

TEST(ChatToolV32, TruncatedCallComesBackAsContent) {
  const std::string text = "ok\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" str";
  auto m = v32(text);
  EXPECT_TRUE(m.tool_calls.empty());
  EXPECT_EQ(m.content, text);
}

TEST(ChatToolV32, StrayClosingTagsAreDropped) {
  auto m = v32("hello</｜DSML｜invoke> world</function_calls>!");
  EXPECT_EQ(m.content, "hello world!");
}

TEST(ChatToolV32, FirstDeltaCarriesIdAndName) {
  auto p = make_tool_parser("deepseekv32", {});
  auto step = p->feed(kGoldCall);
  ASSERT_EQ(step.calls.size(), 2u);
  EXPECT_TRUE(step.calls[0].id && step.calls[0].name);
  EXPECT_EQ(step.calls[0].arguments, "");
  EXPECT_FALSE(step.calls[1].id || step.calls[1].name);
  EXPECT_EQ(step.calls[1].index, 0);
}

TEST(ChatToolV31, SingleCall) {
  auto m = v31("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Tokyo\"}"
               "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", {"get_weather"});
  EXPECT_EQ(m.content, "");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, "{\"city\": \"Tokyo\"}");
}

TEST(ChatToolV31, TextThenTwoCalls) {
  auto m = v31("Checking two cities. \n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
               " {\"location\": \"Tokyo\"} <｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
               "{\"location\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
  EXPECT_EQ(m.content, "Checking two cities.");
  ASSERT_EQ(m.tool_calls.size(), 2u);
  EXPECT_EQ(m.tool_calls[0].arguments, "{\"location\": \"Tokyo\"}");
  EXPECT_EQ(m.tool_calls[1].arguments, "{\"location\": \"Paris\"}");
}

TEST(ChatToolV31, ArgumentsStreamAsTheyArrive) {
  auto p = make_tool_parser("deepseekv31", {});
  auto a = p->feed("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": ");
  ASSERT_EQ(a.calls.size(), 2u);
  EXPECT_EQ(*a.calls[0].name, "f");
  EXPECT_EQ(a.calls[1].arguments, "{\"a\":");  // the trailing space waits for what follows
  auto b = p->feed("1}<｜tool▁call▁end｜>");
  ASSERT_EQ(b.calls.size(), 1u);
  EXPECT_EQ(b.calls[0].arguments, " 1}");
}

TEST(ChatToolV31, UnknownNameMalformedAndTruncated) {
  const std::string unknown = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>rm_rf<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
  auto u = v31(unknown, {"get_weather"});
  EXPECT_TRUE(u.tool_calls.empty());
  EXPECT_EQ(u.content, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>rm_rf<｜tool▁sep｜>{}");

  auto bad = v31("<｜tool▁call▁begin｜>na<me>");
  EXPECT_TRUE(bad.tool_calls.empty());
  EXPECT_EQ(bad.content, "<｜tool▁call▁begin｜>na<me>");

  auto cut = v31("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": [1, 2");
  ASSERT_EQ(cut.tool_calls.size(), 1u);
  EXPECT_EQ(cut.tool_calls[0].arguments, "{\"a\": [1, 2");
}

TEST(ChatToolV31, PlainTextAndStrayEndMarkers) {
  auto m = v31("a <｜tool▁call▁end｜>b<｜tool▁calls▁end｜> c < d");
  EXPECT_TRUE(m.tool_calls.empty());
  EXPECT_EQ(m.content, "a b c < d");
}

TEST(ChatToolParsers, UnknownParserNameIsAnError) {
  EXPECT_THROW(make_tool_parser("hermes", {}), ds::Error);
  EXPECT_TRUE(is_tool_parser_name("deepseekv31"));
}

// The forced opening (tool_choice required / named) must be what the parsers take for the start of a call.
TEST(ChatToolChoice, ForcedOpeningParsesAsACall) {
  const std::string v32_tail =
      "<｜DSML｜parameter name=\"timezone\" string=\"true\">Asia/Shanghai</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜function_calls>";
  EXPECT_EQ(tool_call_opening("deepseekv32", "get_datetime") + v32_tail, kGoldCall);
  auto m = v32(tool_call_opening("deepseekv32", "get_datetime") + v32_tail, {"get_datetime"});
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.content, "");
  auto n = v31(tool_call_opening("deepseekv31", "f") + "{\"a\": 1}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", {"f"});
  ASSERT_EQ(n.tool_calls.size(), 1u);
  EXPECT_EQ(n.tool_calls[0].name, "f");
  EXPECT_EQ(n.tool_calls[0].arguments, "{\"a\": 1}");
  EXPECT_EQ(n.content, "");
  EXPECT_THROW(tool_call_opening("hermes", "f"), ds::Error);
}
