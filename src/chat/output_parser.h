// The model-output pipeline of one chat response: reasoning parser first, then the
// tool-call parser on the content part (SGLang's order).
//
// How the server drives it (streaming):
//   ChatOutputParser p({.starts_in_reasoning = prompt.starts_in_reasoning,
//                       .reasoning_parser = true, .tool_parser = "deepseekv32",
//                       .tool_names = names_of(request.tools)});
//   for each detokenized text piece: ParsedDelta d = p.feed(piece); if (!d.empty()) send d;
//   at the end of generation:        ParsedDelta d = p.finish();    if (!d.empty()) send d;
// Non-streaming: parse_chat_output(text, options) returns the whole message.
// finish_reason "stop" becomes "tool_calls" when the message has tool calls.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/json_text.h"
#include "chat/output_types.h"
#include "chat/reasoning_parser.h"
#include "chat/tool_parser.h"

namespace ds::chat {

struct OutputParserOptions {
  bool starts_in_reasoning = false;  // EncodedPrompt::starts_in_reasoning
  bool reasoning_parser = true;      // --reasoning-parser deepseek-v3 given
  std::string tool_parser;           // "", "deepseekv32" or "deepseekv31"
  std::vector<std::string> tool_names;
};

class ChatOutputParser {
 public:
  explicit ChatOutputParser(const OutputParserOptions& options);
  ParsedDelta feed(std::string_view text);
  ParsedDelta finish();

 private:
  ParsedDelta route(ReasoningParser::Piece piece, bool final);

  std::optional<ReasoningParser> reasoning_;
  std::unique_ptr<ToolCallParser> tools_;
};

ParsedMessage parse_chat_output(std::string_view text, const OutputParserOptions& options);

// The names of the functions in an OpenAI `tools` array (skips malformed entries).
std::vector<std::string> tool_names_of(const Json& tools);

}  // namespace ds::chat
