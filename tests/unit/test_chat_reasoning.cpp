// Reasoning parser "deepseek-v3": one-shot results and split-point invariance.
#include <gtest/gtest.h>

#include "chat/reasoning_parser.h"
#include "chat_stream_check.h"

using namespace ds::chat;

namespace {
ParsedMessage parse(const std::string& text, bool in_reasoning) {
  OutputParserOptions opt;
  opt.starts_in_reasoning = in_reasoning;
  return test::parse_all_ways(opt, text);
}
}  // namespace

TEST(ChatReasoning, ThinkingModeSplitsAtEndTag) {
  auto m = parse("Let me think.\n1+1 is 2.</think>The answer is 2.", true);
  EXPECT_EQ(m.reasoning_content, "Let me think.\n1+1 is 2.");
  EXPECT_EQ(m.content, "The answer is 2.");
}

TEST(ChatReasoning, ChatModeIsAllContent) {
  auto m = parse("no tags here </think> still content", false);
  EXPECT_EQ(m.reasoning_content, "");
  EXPECT_EQ(m.content, "no tags here </think> still content");
}

TEST(ChatReasoning, LeadingThinkTagOpensReasoning) {
  auto m = parse("<think>hmm</think>ok", false);
  EXPECT_EQ(m.reasoning_content, "hmm");
  EXPECT_EQ(m.content, "ok");
  auto forced = parse("<think><think>x</think>y", true);
  EXPECT_EQ(forced.reasoning_content, "x");
  EXPECT_EQ(forced.content, "y");
}

TEST(ChatReasoning, TruncatedReasoningStaysReasoning) {
  auto m = parse("still thinking </thi", true);
  EXPECT_EQ(m.reasoning_content, "still thinking </thi");
  EXPECT_EQ(m.content, "");
  auto p = parse("<thi", false);
  EXPECT_EQ(p.content, "<thi");
}

TEST(ChatReasoning, OnlyTheFirstEndTagCounts) {
  auto m = parse("a</think>b</think>c", true);
  EXPECT_EQ(m.reasoning_content, "a");
  EXPECT_EQ(m.content, "b</think>c");
}

TEST(ChatReasoning, StreamsReasoningBeforeTheEndTagArrives) {
  ReasoningParser p(true);
  auto a = p.feed("abc</th");
  EXPECT_EQ(a.reasoning, "abc");  // "</th" held back: it may be the end tag
  auto b = p.feed("ink>def");
  EXPECT_EQ(b.reasoning, "");
  EXPECT_EQ(b.content, "def");
  EXPECT_FALSE(p.in_reasoning());
}
