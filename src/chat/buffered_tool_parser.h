// What both tool-call formats share (internal to chat/): text is buffered and drained by the
// format's state machine, plain text before a block is passed through with trailing whitespace
// held back, and calls are accepted only for the request's tool names.
#pragma once
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "chat/text_scan.h"
#include "chat/tool_parser.h"

namespace ds::chat {

class BufferedToolParser : public ToolCallParser {
 public:
  explicit BufferedToolParser(std::vector<std::string> names) : names_(std::move(names)) {}
  ToolParseStep feed(std::string_view text) final {
    buf_.append(text);
    ToolParseStep out;
    drain(false, out);
    return out;
  }
  ToolParseStep finish() final {
    ToolParseStep out;
    drain(true, out);
    return out;
  }

 protected:
  // Consumes what can be decided from buf_; with `final`, everything.
  virtual void drain(bool final, ToolParseStep& out) = 0;

  bool known(const std::string& name) const {
    return names_.empty() || std::find(names_.begin(), names_.end(), name) != names_.end();
  }

  // The text state: passes buf_ up to the first of `markers` through as content and consumes
  // that marker, returning its index. Without a whole marker buffered returns -1, keeping back a
  // tail that may start one (unless `final`, which also flushes the held whitespace).
  int take_text_until(const std::vector<std::string_view>& markers, bool final, ToolParseStep& out) {
    MarkerHit hit = find_first_marker(buf_, markers);
    if (hit.pos == std::string::npos) {
      size_t hold = final ? 0 : partial_marker_suffix(buf_, markers);
      text_.emit(std::string_view(buf_).substr(0, buf_.size() - hold), out.content);
      buf_.erase(0, buf_.size() - hold);
      if (final) text_.flush(out.content);
      return -1;
    }
    text_.emit(std::string_view(buf_).substr(0, hit.pos), out.content);
    buf_.erase(0, hit.pos + markers[hit.marker].size());
    return int(hit.marker);
  }

  std::vector<std::string> names_;
  std::string buf_;
  TrailingSpaceHolder text_;
};

}  // namespace ds::chat
