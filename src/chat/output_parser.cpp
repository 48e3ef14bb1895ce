#include "chat/output_parser.h"

#include <nlohmann/json.hpp>

namespace ds::chat {

ChatOutputParser::ChatOutputParser(const OutputParserOptions& options) {
  if (options.reasoning_parser) reasoning_.emplace(options.starts_in_reasoning);
  if (!options.tool_parser.empty()) tools_ = make_tool_parser(options.tool_parser, options.tool_names);
}

ParsedDelta ChatOutputParser::route(ReasoningParser::Piece piece, bool final) {
  ParsedDelta out;
  out.reasoning_content = std::move(piece.reasoning);
  if (!tools_) {
    out.content = std::move(piece.content);
    return out;
  }
  ToolParseStep step = tools_->feed(piece.content);
  out.content = std::move(step.content);
  out.tool_calls = std::move(step.calls);
  if (final) {
    ToolParseStep last = tools_->finish();
    out.content += last.content;
    for (auto& c : last.calls) out.tool_calls.push_back(std::move(c));
  }
  return out;
}

ParsedDelta ChatOutputParser::feed(std::string_view text) {
  if (reasoning_) return route(reasoning_->feed(text), false);
  return route({"", std::string(text)}, false);
}

ParsedDelta ChatOutputParser::finish() {
  if (reasoning_) return route(reasoning_->finish(), true);
  return route({}, true);
}

ParsedMessage parse_chat_output(std::string_view text, const OutputParserOptions& options) {
  ChatOutputParser parser(options);
  ParsedMessage msg;
  accumulate(msg, parser.feed(text));
  accumulate(msg, parser.finish());
  return msg;
}

std::vector<std::string> tool_names_of(const Json& tools) {
  std::vector<std::string> names;
  if (!tools.is_array()) return names;
  for (const auto& t : tools)
    if (t.is_object() && t.contains("function") && t["function"].is_object() &&
        t["function"].contains("name") && t["function"]["name"].is_string())
      names.push_back(t["function"]["name"].get<std::string>());
  return names;
}

}  // namespace ds::chat
