// What the output parsers produce: OpenAI-shaped deltas while streaming, and the whole
// assistant message when everything is known.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace ds::chat {

// One OpenAI `choices[].delta.tool_calls[]` entry. The first delta of a call carries id
// and name (type is always "function"); later ones carry argument fragments.
struct ToolCallDelta {
  int index = 0;
  std::optional<std::string> id;
  std::optional<std::string> name;
  std::string arguments;
};

// One streaming step: the text to send as reasoning_content / content, and tool-call deltas.
struct ParsedDelta {
  std::string reasoning_content;
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
  bool empty() const { return reasoning_content.empty() && content.empty() && tool_calls.empty(); }
};

struct ParsedToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text
};

struct ParsedMessage {
  std::string reasoning_content;
  std::string content;
  std::vector<ParsedToolCall> tool_calls;
};

// Folds a delta into a message (how a client rebuilds the message from a stream).
void accumulate(ParsedMessage& message, const ParsedDelta& delta);

// A fresh OpenAI tool-call id: "call_" + 24 random alphanumerics.
std::string make_tool_call_id();

}  // namespace ds::chat
