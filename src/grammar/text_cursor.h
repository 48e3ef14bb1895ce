// A cursor over grammar source text (EBNF, regex) with the pieces both parsers need: UTF-8 code
// points, escapes, and errors that say where.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace ds::grammar {

class TextCursor {
 public:
  TextCursor(std::string_view text, std::string what) : text_(text), what_(std::move(what)) {}
  bool done() const { return pos_ >= text_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }
  char next() { return text_[pos_++]; }
  bool eat(char c);
  bool eat(std::string_view s);
  size_t pos() const { return pos_; }
  void seek(size_t p) { pos_ = p; }
  std::string_view rest() const { return text_.substr(pos_); }
  // Decodes one UTF-8 code point (throws on invalid UTF-8).
  uint32_t next_codepoint();
  // After a backslash: \n \r \t \f \v \0 \e \a \\ and friends, \xHH, \x{H+}, \uHHHH,
  // \UHHHHHHHH; any other punctuation stands for itself. Letters and digits not listed throw.
  uint32_t escape();
  // "<what> at line L, column C: msg" (or "offset N" for single-line texts).
  [[noreturn]] void error(const std::string& msg) const;
  [[noreturn]] void error_at(size_t pos, const std::string& msg) const;

 private:
  uint32_t hex(size_t digits);
  std::string_view text_;
  std::string what_;
  size_t pos_ = 0;
};

}  // namespace ds::grammar
