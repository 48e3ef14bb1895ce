// Reasoning parser "deepseek-v3" (SGLang's --reasoning-parser deepseek-v3): splits model
// output into reasoning_content (before "</think>") and content (after).
//
// In thinking mode the prompt already ends with "<think>", so generation starts inside the
// reasoning block: construct with starts_in_reasoning = EncodedPrompt::starts_in_reasoning.
// Otherwise everything is content, unless the output itself begins with "<think>".
// Leading "<think>" tags are dropped; output that never closes the block is all reasoning
// (a truncated answer). Chunks may split tags anywhere: a tail that could begin "</think>"
// is held until the next feed() or finish().
#pragma once
#include <string>
#include <string_view>

namespace ds::chat {

class ReasoningParser {
 public:
  struct Piece {
    std::string reasoning;
    std::string content;
  };

  explicit ReasoningParser(bool starts_in_reasoning) : in_reasoning_(starts_in_reasoning) {}
  Piece feed(std::string_view text);
  Piece finish();  // flushes held text; call once at the end of the output
  bool in_reasoning() const { return in_reasoning_; }

 private:
  Piece drain(bool final);

  std::string buf_;
  bool in_reasoning_;
  bool at_start_ = true;  // nothing consumed yet: a leading "<think>" may still come
};

// Whole-output parse.
ReasoningParser::Piece parse_reasoning(std::string_view text, bool starts_in_reasoning);

}  // namespace ds::chat
