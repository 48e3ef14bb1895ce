// The opening of a tool call in each format (spec/dsv32.md section 6): what the model writes first
// when its answer is a call and nothing else.
#include "chat/tool_parser.h"
#include "util/error.h"

namespace ds::chat {

std::string tool_call_opening(const std::string& parser, const std::string& name) {
  // V3.2 (DSML): content, then "\n\n" and the function_calls block; with no content the block
  // still follows the blank line, as DeepSeek's encoder renders such assistant turns.
  if (parser == "deepseekv32")
    return "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"" + name + "\">\n";
  if (parser == "deepseekv31") return "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>";
  ds::fail("unknown tool-call parser '{}' (expected deepseekv32 or deepseekv31)", parser);
}

}  // namespace ds::chat
