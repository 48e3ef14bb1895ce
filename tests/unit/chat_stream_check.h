// Checks that a streaming output parser gives the same message however the text is cut:
// the whole text at once, every 2-way split, every 3-way split (short texts) and one byte
// at a time must all rebuild the same reasoning, content and tool calls (ids aside).
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "chat/output_parser.h"

namespace ds::chat::test {

inline ParsedMessage run_chunks(const OutputParserOptions& opt, const std::string& text,
                                const std::vector<size_t>& cuts) {
  ChatOutputParser p(opt);
  ParsedMessage msg;
  size_t prev = 0;
  for (size_t c : cuts) {
    accumulate(msg, p.feed(std::string_view(text).substr(prev, c - prev)));
    prev = c;
  }
  accumulate(msg, p.feed(std::string_view(text).substr(prev)));
  accumulate(msg, p.finish());
  return msg;
}

inline bool same_message(const ParsedMessage& a, const ParsedMessage& b) {
  if (a.reasoning_content != b.reasoning_content || a.content != b.content) return false;
  if (a.tool_calls.size() != b.tool_calls.size()) return false;
  for (size_t i = 0; i < a.tool_calls.size(); ++i)
    if (a.tool_calls[i].name != b.tool_calls[i].name || a.tool_calls[i].arguments != b.tool_calls[i].arguments)
      return false;
  return true;
}

// Returns the one-shot parse after checking every chunking against it.
inline ParsedMessage parse_all_ways(const OutputParserOptions& opt, const std::string& text) {
  ParsedMessage whole = parse_chat_output(text, opt);
  for (size_t i = 0; i <= text.size(); ++i)
    EXPECT_TRUE(same_message(whole, run_chunks(opt, text, {i}))) << "split at " << i;
  if (text.size() <= 160)
    for (size_t i = 0; i <= text.size(); ++i)
      for (size_t j = i; j <= text.size(); ++j)
        if (!same_message(whole, run_chunks(opt, text, {i, j}))) {
          ADD_FAILURE() << "split at " << i << "," << j;
          return whole;
        }
  std::vector<size_t> every;
  for (size_t i = 1; i < text.size(); ++i) every.push_back(i);
  EXPECT_TRUE(same_message(whole, run_chunks(opt, text, every))) << "byte by byte";
  for (const auto& c : whole.tool_calls) {
    EXPECT_EQ(c.id.substr(0, 5), "call_");
    EXPECT_EQ(c.id.size(), 29u);
  }
  return whole;
}

}  // namespace ds::chat::test
