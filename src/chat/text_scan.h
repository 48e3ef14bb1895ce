// Small text helpers for the streaming parsers: find the first of several markers, and
// how much of a buffer's tail might be the start of a marker (and so must wait for more
// text before it can be emitted).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace ds::chat {

struct MarkerHit {
  size_t pos = std::string::npos;  // npos: none found
  size_t marker = 0;               // index into the marker list
};
MarkerHit find_first_marker(std::string_view text, const std::vector<std::string_view>& markers);

// Length of the longest suffix of `text` that is a proper prefix of one of `markers`.
size_t partial_marker_suffix(std::string_view text, const std::vector<std::string_view>& markers);

// True if `text` is a proper prefix of one of `markers` (more text could complete it).
bool is_proper_prefix_of_any(std::string_view text, const std::vector<std::string_view>& markers);

bool is_ascii_space(char c);
std::string_view strip_ascii(std::string_view s);
size_t skip_ascii_space(std::string_view s, size_t pos = 0);

// Emits text while holding back trailing whitespace until it is known whether more text
// follows (then it is emitted) or a tool-call block follows (then it is dropped, like the
// reference parsers' strip of the text before the block).
class TrailingSpaceHolder {
 public:
  // Appends `text` to `out`, keeping any trailing whitespace back.
  void emit(std::string_view text, std::string& out);
  // The held whitespace: to `out` (more text follows / end of output) or dropped.
  void flush(std::string& out) { out += held_; held_.clear(); }
  std::string take() { std::string h; h.swap(held_); return h; }
  bool holding() const { return !held_.empty(); }

 private:
  std::string held_;
};

}  // namespace ds::chat
