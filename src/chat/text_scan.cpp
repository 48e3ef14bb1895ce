#include "chat/text_scan.h"

namespace ds::chat {

MarkerHit find_first_marker(std::string_view text, const std::vector<std::string_view>& markers) {
  MarkerHit best;
  for (size_t m = 0; m < markers.size(); ++m) {
    size_t p = text.find(markers[m]);
    if (p != std::string_view::npos && (best.pos == std::string::npos || p < best.pos)) {
      best.pos = p;
      best.marker = m;
    }
  }
  return best;
}

size_t partial_marker_suffix(std::string_view text, const std::vector<std::string_view>& markers) {
  size_t best = 0;
  for (auto m : markers) {
    size_t max_len = std::min(text.size(), m.size() - 1);
    for (size_t len = max_len; len > best; --len) {
      if (text.substr(text.size() - len) == m.substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

bool is_proper_prefix_of_any(std::string_view text, const std::vector<std::string_view>& markers) {
  for (auto m : markers)
    if (text.size() < m.size() && m.substr(0, text.size()) == text) return true;
  return false;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view strip_ascii(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_ascii_space(s[b])) ++b;
  while (e > b && is_ascii_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

size_t skip_ascii_space(std::string_view s, size_t pos) {
  while (pos < s.size() && is_ascii_space(s[pos])) ++pos;
  return pos;
}

void TrailingSpaceHolder::emit(std::string_view text, std::string& out) {
  size_t end = text.size();
  while (end > 0 && is_ascii_space(text[end - 1])) --end;
  if (end == 0) {  // all whitespace: keep holding
    held_.append(text);
    return;
  }
  out += held_;
  held_.clear();
  out.append(text.substr(0, end));
  held_.append(text.substr(end));
}

}  // namespace ds::chat
