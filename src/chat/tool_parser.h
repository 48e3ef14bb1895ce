// Tool-call parsers: "deepseekv32" (DSML, DeepSeek-V3.2) and "deepseekv31" (special-token
// format, DeepSeek-V3.1 / V3.2-Exp), both for whole outputs and for streams.
//
// Feed the content text (after the reasoning parser) in any chunks; each feed() returns
// the content that is now safe to send and tool-call deltas; finish() flushes. Splitting
// the text differently never changes the concatenated content or the calls. Text before a
// tool block is content (trailing whitespace before the block dropped). Anything that does
// not parse — a broken block, an unknown tool name, an unterminated call — comes back as
// content, never lost and never an exception.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chat/output_types.h"

namespace ds::chat {

struct ToolParseStep {
  std::string content;
  std::vector<ToolCallDelta> calls;
};

class ToolCallParser {
 public:
  virtual ~ToolCallParser() = default;
  virtual ToolParseStep feed(std::string_view text) = 0;
  virtual ToolParseStep finish() = 0;
};

// `name`: "deepseekv32" or "deepseekv31" (throws ds::Error otherwise). `tool_names`: the
// request's tool names; calls to other names come back as content. Empty: accept any name.
std::unique_ptr<ToolCallParser> make_tool_parser(const std::string& name,
                                                 std::vector<std::string> tool_names);
bool is_tool_parser_name(const std::string& name);

// The text with which a model writing tool-call format `parser` opens a call to `name` when it
// calls a tool straight away (no content first), up to where the arguments begin. Forcing this
// text is how tool_choice "required" / a named function is enforced.
std::string tool_call_opening(const std::string& parser, const std::string& name);

// Internal constructors (exposed for tests).
std::unique_ptr<ToolCallParser> make_deepseekv32_tool_parser(std::vector<std::string> tool_names);
std::unique_ptr<ToolCallParser> make_deepseekv31_tool_parser(std::vector<std::string> tool_names);

}  // namespace ds::chat
