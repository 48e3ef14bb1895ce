#include "chat/reasoning_parser.h"

#include "chat/text_scan.h"

namespace ds::chat {
namespace {
constexpr std::string_view kStart = "<think>";
constexpr std::string_view kEnd = "</think>";
}  // namespace

ReasoningParser::Piece ReasoningParser::feed(std::string_view text) {
  buf_.append(text);
  return drain(false);
}

ReasoningParser::Piece ReasoningParser::finish() { return drain(true); }

ReasoningParser::Piece ReasoningParser::drain(bool final) {
  Piece out;
  while (at_start_) {
    std::string_view b = buf_;
    if (b.substr(0, kStart.size()) == kStart) {
      buf_.erase(0, kStart.size());
      in_reasoning_ = true;
      continue;
    }
    if (!final && b.size() < kStart.size() && kStart.substr(0, b.size()) == b) return out;
    at_start_ = false;
  }
  if (in_reasoning_) {
    size_t p = buf_.find(kEnd);
    if (p != std::string::npos) {
      out.reasoning = buf_.substr(0, p);
      out.content = buf_.substr(p + kEnd.size());
      buf_.clear();
      in_reasoning_ = false;
      return out;
    }
    size_t hold = final ? 0 : partial_marker_suffix(buf_, {kEnd});
    out.reasoning = buf_.substr(0, buf_.size() - hold);
    buf_.erase(0, buf_.size() - hold);
    return out;
  }
  out.content.swap(buf_);
  return out;
}

ReasoningParser::Piece parse_reasoning(std::string_view text, bool starts_in_reasoning) {
  ReasoningParser p(starts_in_reasoning);
  auto a = p.feed(text);
  auto b = p.finish();
  return {a.reasoning + b.reasoning, a.content + b.content};
}

}  // namespace ds::chat
