#include "grammar/text_cursor.h"

#include <cctype>

#include "util/error.h"

namespace ds::grammar {

bool TextCursor::eat(char c) {
  if (peek() != c) return false;
  ++pos_;
  return true;
}

bool TextCursor::eat(std::string_view s) {
  if (rest().substr(0, s.size()) != s) return false;
  pos_ += s.size();
  return true;
}

uint32_t TextCursor::next_codepoint() {
  const size_t start = pos_;
  const uint8_t c = uint8_t(next());
  if (c < 0x80) return c;
  int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (len == 0) error_at(start, "invalid UTF-8");
  uint32_t cp = c & (0x3F >> (len - 1));
  for (int i = 1; i < len; ++i) {
    const uint8_t d = uint8_t(peek());
    if ((d & 0xC0) != 0x80) error_at(start, "invalid UTF-8");
    ++pos_;
    cp = cp << 6 | (d & 0x3F);
  }
  const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error_at(start, "invalid UTF-8");
  return cp;
}

uint32_t TextCursor::hex(size_t digits) {
  uint32_t v = 0;
  for (size_t i = 0; i < digits; ++i) {
    const char c = peek();
    if (!std::isxdigit(uint8_t(c))) error(std::string("expected ") + std::to_string(digits) + " hex digits");
    ++pos_;
    v = v * 16 + uint32_t(std::isdigit(uint8_t(c)) ? c - '0' : std::tolower(c) - 'a' + 10);
  }
  return v;
}

uint32_t TextCursor::escape() {
  const size_t start = pos_ - 1;
  if (done()) error_at(start, "a backslash at the end");
  const char c = next();
  uint32_t cp = 0;
  switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'a': return 0x07;
    case 'e': return 0x1B;
    case '0': return 0;
    case 'x':
      if (eat('{')) {
        size_t n = 0;
        while (std::isxdigit(uint8_t(peek())) && n < 8) {
          ++n;
          ++pos_;
        }
        pos_ -= n;
        if (n == 0) error_at(start, "empty \\x{}");
        cp = hex(n);
        if (!eat('}')) error_at(start, "unterminated \\x{...}");
      } else {
        cp = hex(2);
      }
      break;
    case 'u': cp = hex(4); break;
    case 'U': cp = hex(8); break;
    default:
      if (std::isalnum(uint8_t(c))) error_at(start, std::string("unsupported escape \\") + c);
      pos_ = start + 1;
      return next_codepoint();
  }
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error_at(start, "escape is not a Unicode scalar value");
  return cp;
}

void TextCursor::error(const std::string& msg) const { error_at(pos_, msg); }

void TextCursor::error_at(size_t pos, const std::string& msg) const {
  size_t line = 1, col = 1;
  bool multi = text_.find('\n') != std::string_view::npos;
  for (size_t i = 0; i < pos && i < text_.size(); ++i) {
    if (text_[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  if (multi) fail("{} at line {}, column {}: {}", what_, line, col, msg);
  fail("{} at offset {}: {}", what_, pos, msg);
}

}  // namespace ds::grammar
