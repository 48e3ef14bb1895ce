// Tool-call parser "deepseekv31": special-token blocks of DeepSeek-V3.1 / V3.2-Exp
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{JSON}<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
// The name is emitted as soon as <｜tool▁sep｜> arrives, then the argument text streams as
// it is generated (leading/trailing whitespace trimmed), as SGLang's detector does.
#include <algorithm>

#include "chat/text_scan.h"
#include "chat/buffered_tool_parser.h"
#include "util/error.h"

namespace ds::chat {
namespace {

constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr size_t kMaxNameBytes = 512;

// Text state: block openers first, then stray end markers (dropped from content).
const std::vector<std::string_view> kTextMarkers = {kCallsBegin, kCallBegin, kCallsEnd, kCallEnd};
const std::vector<std::string_view> kSectionMarkers = {kCallBegin, kCallsEnd};
const std::vector<std::string_view> kArgsMarkers = {kCallEnd, kCallsEnd, kCallBegin};

class DeepSeekV31ToolParser final : public BufferedToolParser {
 public:
  using BufferedToolParser::BufferedToolParser;

 private:
  enum class State { Text, Section, Name, Args };

  void open_section(std::string_view marker) {
    dropped_space_ = text_.take();
    section_raw_ = std::string(marker);
    calls_in_section_ = 0;
  }

  // Gives the unaccounted section text back as content and returns to plain text.
  void abandon(ToolParseStep& out, const std::string& extra = "") {
    if (calls_in_section_ == 0) out.content += dropped_space_;
    out.content += section_raw_ + extra;
    dropped_space_.clear();
    section_raw_.clear();
    state_ = State::Text;
  }

  // Argument text: leading whitespace of the arguments dropped, trailing held back.
  void emit_args(std::string_view text, ToolParseStep& out) {
    if (!args_started_) {
      size_t s = skip_ascii_space(text);
      text.remove_prefix(s);
      if (text.empty()) return;
      args_started_ = true;
    }
    std::string frag;
    args_space_.emit(text, frag);
    if (!frag.empty()) {
      ToolCallDelta d;
      d.index = next_index_ - 1;
      d.arguments = std::move(frag);
      out.calls.push_back(std::move(d));
    }
  }

  void close_call() {
    args_space_.take();  // trailing whitespace of the arguments is dropped
    ++calls_in_section_;
    section_raw_.clear();
    dropped_space_.clear();
  }

  void drain(bool final, ToolParseStep& out) override {
    for (;;) {
      switch (state_) {
        case State::Text: {
          const int m = take_text_until(kTextMarkers, final, out);
          if (m < 0) return;
          const auto marker = kTextMarkers[m];
          if (m == 0) {
            open_section(marker);
            state_ = State::Section;
          } else if (m == 1) {  // a call without the section opener
            open_section(marker);
            state_ = State::Name;
          }
          continue;
        }
        case State::Section: {
          size_t ws = skip_ascii_space(buf_);
          section_raw_.append(buf_, 0, ws);
          buf_.erase(0, ws);
          if (buf_.empty()) {
            if (final) {
              if (calls_in_section_ == 0) abandon(out);
              state_ = State::Text;
            }
            return;
          }
          MarkerHit hit = find_first_marker(buf_, kSectionMarkers);
          if (hit.pos == 0) {
            buf_.erase(0, kSectionMarkers[hit.marker].size());
            if (hit.marker == 0) {
              section_raw_ += std::string(kCallBegin);
              state_ = State::Name;
            } else {
              section_raw_.clear();
              dropped_space_.clear();
              state_ = State::Text;
            }
            continue;
          }
          if (!final && is_proper_prefix_of_any(buf_, kSectionMarkers)) return;
          abandon(out);
          continue;
        }
        case State::Name: {
          // The name must end within kMaxNameBytes; the cut is by position so that the
          // outcome does not depend on how the text was chunked.
          size_t lt = buf_.find('<');
          if (lt == std::string::npos || lt > kMaxNameBytes) {
            if (buf_.size() <= kMaxNameBytes) {
              if (!final) return;
              abandon(out, buf_);
              buf_.clear();
              continue;
            }
            abandon(out, buf_.substr(0, kMaxNameBytes + 1));
            buf_.erase(0, kMaxNameBytes + 1);
            continue;
          }
          std::string_view rest = std::string_view(buf_).substr(lt);
          if (rest.substr(0, kSep.size()) != kSep) {
            if (!final && rest.size() < kSep.size() && kSep.substr(0, rest.size()) == rest) return;
            abandon(out, buf_.substr(0, lt));  // not "NAME<｜tool▁sep｜>": plain text after all
            buf_.erase(0, lt);
            continue;
          }
          const std::string name(strip_ascii(std::string_view(buf_).substr(0, lt)));
          if (name.empty() || !known(name)) {
            abandon(out, buf_.substr(0, lt + kSep.size()));
            buf_.erase(0, lt + kSep.size());
            continue;
          }
          buf_.erase(0, lt + kSep.size());
          ToolCallDelta head;
          head.index = next_index_++;
          head.id = make_tool_call_id();
          head.name = name;
          out.calls.push_back(std::move(head));
          args_started_ = false;
          state_ = State::Args;
          continue;
        }
        case State::Args: {
          MarkerHit hit = find_first_marker(buf_, kArgsMarkers);
          if (hit.pos == std::string::npos) {
            size_t hold = final ? 0 : partial_marker_suffix(buf_, kArgsMarkers);
            emit_args(std::string_view(buf_).substr(0, buf_.size() - hold), out);
            buf_.erase(0, buf_.size() - hold);
            if (final) {
              close_call();
              state_ = State::Text;
            }
            return;
          }
          emit_args(std::string_view(buf_).substr(0, hit.pos), out);
          buf_.erase(0, hit.pos + kArgsMarkers[hit.marker].size());
          close_call();
          if (hit.marker == 0) {
            state_ = State::Section;
          } else if (hit.marker == 1) {
            state_ = State::Text;
          } else {
            section_raw_ = std::string(kCallBegin);
            state_ = State::Name;
          }
          continue;
        }
      }
    }
  }

  State state_ = State::Text;
  TrailingSpaceHolder args_space_;
  bool args_started_ = false;
  std::string dropped_space_;
  std::string section_raw_;
  int calls_in_section_ = 0;
  int next_index_ = 0;
};

}  // namespace

std::unique_ptr<ToolCallParser> make_deepseekv31_tool_parser(std::vector<std::string> tool_names) {
  return std::make_unique<DeepSeekV31ToolParser>(std::move(tool_names));
}

bool is_tool_parser_name(const std::string& name) {
  return name == "deepseekv32" || name == "deepseekv31";
}

std::unique_ptr<ToolCallParser> make_tool_parser(const std::string& name,
                                                 std::vector<std::string> tool_names) {
  if (name == "deepseekv32") return make_deepseekv32_tool_parser(std::move(tool_names));
  if (name == "deepseekv31") return make_deepseekv31_tool_parser(std::move(tool_names));
  ds::fail("unknown tool-call parser '{}' (expected deepseekv32 or deepseekv31)", name);
}

}  // namespace ds::chat
