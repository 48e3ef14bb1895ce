// Tool-call parser "deepseekv32": DSML blocks
//   <｜DSML｜function_calls>
//   <｜DSML｜invoke name="NAME">
//   <｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter>
//   </｜DSML｜invoke>
//   </｜DSML｜function_calls>
// and the spellings without "｜DSML｜" / with a JSON object body. A call is emitted when its
// invoke closes (name and complete arguments at once, as SGLang does).
#include <algorithm>

#include "chat/dsml_invoke.h"
#include "chat/text_scan.h"
#include "chat/buffered_tool_parser.h"

namespace ds::chat {
namespace {

const std::vector<std::string_view> kSectionOpen = {"<｜DSML｜function_calls>", "<function_calls>"};
const std::vector<std::string_view> kSectionClose = {"</｜DSML｜function_calls>", "</function_calls>"};
const std::vector<std::string_view> kInvokeClose = {"</｜DSML｜invoke>", "</invoke>"};
// Text-state markers: section openers, then stray closing tags (dropped from content).
const std::vector<std::string_view> kTextMarkers = {"<｜DSML｜function_calls>", "<function_calls>",
                                                    "</｜DSML｜function_calls>", "</function_calls>",
                                                    "</｜DSML｜invoke>", "</invoke>"};
const std::vector<std::string_view> kInvokeOpenStarts = {"<｜DSML｜invoke", "<invoke"};

class DeepSeekV32ToolParser final : public BufferedToolParser {
 public:
  using BufferedToolParser::BufferedToolParser;

 private:
  enum class State { Text, Section, Invoke };

  // Gives up on the current section: its raw text becomes content again.
  void abandon_section(ToolParseStep& out) {
    if (calls_in_section_ == 0) out.content += dropped_space_;
    out.content += section_raw_;
    section_raw_.clear();
    dropped_space_.clear();
    state_ = State::Text;
  }

  // An invoke that cannot be a call: its raw text (and what preceded it) becomes content.
  void give_back_invoke(const std::string& tail, ToolParseStep& out) {
    if (calls_in_section_ == 0) out.content += dropped_space_;
    dropped_space_.clear();
    out.content += section_raw_ + invoke_raw_ + tail;
    section_raw_.clear();
  }

  void emit_call(const std::string& name, const Json& args, ToolParseStep& out) {
    ToolCallDelta head;
    head.index = next_index_;
    head.id = make_tool_call_id();
    head.name = name;
    ToolCallDelta body;
    body.index = next_index_++;
    body.arguments = python_json_dumps(args);
    out.calls.push_back(std::move(head));
    out.calls.push_back(std::move(body));
  }

  void drain(bool final, ToolParseStep& out) override {
    for (;;) {
      if (state_ == State::Text) {
        const int m = take_text_until(kTextMarkers, final, out);
        if (m < 0) return;
        const auto marker = kTextMarkers[m];
        if (m < 2) {  // a section opens; whitespace before it is dropped
          dropped_space_ = text_.take();
          section_raw_ = std::string(marker);
          calls_in_section_ = 0;
          state_ = State::Section;
        }
        continue;
      }
      if (state_ == State::Section) {
        size_t ws = skip_ascii_space(buf_);
        section_raw_.append(buf_, 0, ws);
        buf_.erase(0, ws);
        if (buf_.empty()) {
          if (final) {
            if (calls_in_section_ == 0) abandon_section(out);
            state_ = State::Text;
          }
          return;
        }
        if (auto h = find_first_marker(buf_, kSectionClose); h.pos == 0) {
          // A section without a single call was given back as content: so is its end.
          if (calls_in_section_ == 0) out.content += section_raw_ + std::string(kSectionClose[h.marker]);
          buf_.erase(0, kSectionClose[h.marker].size());
          section_raw_.clear();
          dropped_space_.clear();
          state_ = State::Text;
          continue;
        }
        size_t len = 0;
        std::string name;
        dsml::Match m = dsml::match_invoke_open(buf_, len, name);
        if (m == dsml::Match::Complete) {
          invoke_name_ = name;
          invoke_raw_ = buf_.substr(0, len);
          buf_.erase(0, len);
          state_ = State::Invoke;
          continue;
        }
        const bool could_grow = m == dsml::Match::NeedMore || is_proper_prefix_of_any(buf_, kSectionClose);
        if (could_grow && !final) return;
        abandon_section(out);  // not a DSML block after all
        continue;
      }
      // State::Invoke: wait for the closing tag, then parse the whole body.
      MarkerHit close = find_first_marker(buf_, kInvokeClose);
      if (close.pos == std::string::npos) {
        if (!final) return;
        give_back_invoke(buf_, out);  // unterminated call
        buf_.clear();
        state_ = State::Text;
        continue;
      }
      const std::string body = buf_.substr(0, close.pos);
      const size_t close_len = kInvokeClose[close.marker].size();
      Json args;
      if (known(invoke_name_) && dsml::parse_invoke_body(body, args)) {
        emit_call(invoke_name_, args, out);
        ++calls_in_section_;
        section_raw_.clear();
        dropped_space_.clear();
      } else {
        give_back_invoke(buf_.substr(0, close.pos + close_len), out);
      }
      buf_.erase(0, close.pos + close_len);
      state_ = State::Section;
    }
  }

  State state_ = State::Text;
  std::string dropped_space_;  // whitespace dropped before the open section
  std::string section_raw_;    // section text not yet accounted for (for fallback)
  std::string invoke_raw_;
  std::string invoke_name_;
  int calls_in_section_ = 0;
  int next_index_ = 0;
};

}  // namespace

std::unique_ptr<ToolCallParser> make_deepseekv32_tool_parser(std::vector<std::string> tool_names) {
  return std::make_unique<DeepSeekV32ToolParser>(std::move(tool_names));
}

}  // namespace ds::chat
