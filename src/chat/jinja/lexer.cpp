#include "chat/jinja/lexer.h"

#include <fmt/format.h>

#include <cctype>
#include <cstring>

#include "chat/jinja/value.h"

namespace ds::chat::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string normalize_newlines(const std::string& src) {
  std::string out;
  out.reserve(src.size());
  for (size_t k = 0; k < src.size(); ++k) {
    if (src[k] == '\r') {
      out += '\n';
      if (k + 1 < src.size() && src[k + 1] == '\n') ++k;
    } else {
      out += src[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : s_(normalize_newlines(src)) {}

  std::vector<Token> run() {
    bool line_starting = true;  // the last tag ended with a newline (or nothing came yet)
    while (pos_ < s_.size()) {
      size_t open = find_tag(pos_);
      std::string text = s_.substr(pos_, (open == std::string::npos ? s_.size() : open) - pos_);
      if (open == std::string::npos) {
        emit_text(text);
        break;
      }
      const char kind = s_[open + 1];  // '{', '%' or '#'
      const char mod = open + 2 < s_.size() ? s_[open + 2] : 0;
      if (mod == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (mod != '+' && kind != '{') {  // lstrip_blocks
        const size_t l = text.rfind('\n') + 1;  // npos + 1 == 0
        if (l > 0 || line_starting) {
          bool blank = l < text.size();
          for (size_t k = l; k < text.size(); ++k) blank = blank && is_space(text[k]);
          if (blank) text.resize(l);
        }
      }
      emit_text(text);
      pos_ = open + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        size_t end = s_.find("#}", pos_);
        if (end == std::string::npos) fail_at("unclosed comment");
        line_ += count_newlines(pos_, end);
        after_tag(end, line_starting, pos_);
      } else if (kind == '%' && is_raw(pos_)) {
        lex_raw(line_starting);
      } else {
        toks_.push_back({kind == '{' ? Token::Type::VarBegin : Token::Type::BlockBegin, "", line_});
        lex_expression(kind == '{' ? "}}" : "%}", line_starting);
      }
    }
    toks_.push_back({Token::Type::End, "", line_});
    return std::move(toks_);
  }

 private:
  [[noreturn]] void fail_at(const std::string& what) const {
    throw UnsupportedError(fmt::format("template line {}: {}", line_, what));
  }
  int count_newlines(size_t a, size_t b) const {
    int n = 0;
    for (size_t k = a; k < b && k < s_.size(); ++k) n += s_[k] == '\n';
    return n;
  }
  size_t find_tag(size_t from) const {
    for (size_t k = s_.find('{', from); k != std::string::npos; k = s_.find('{', k + 1))
      if (k + 1 < s_.size() && (s_[k + 1] == '{' || s_[k + 1] == '%' || s_[k + 1] == '#')) return k;
    return std::string::npos;
  }
  void emit_text(const std::string& text) {
    if (!text.empty()) toks_.push_back({Token::Type::Text, text, line_});
    for (char c : text) line_ += c == '\n';
  }
  // `end` points at the closing delimiter ("#}", "%}" or "}}"); `body_start` is where the tag's
  // content began (a '-' or '+' right before `end` and after it is a modifier).
  void after_tag(size_t end, bool& line_starting, size_t body_start) {
    const bool minus = end > body_start && s_[end - 1] == '-';
    const bool plus = end > body_start && s_[end - 1] == '+';
    const bool var = s_[end] == '}';
    pos_ = end + 2;
    line_starting = false;
    if (minus) {
      while (pos_ < s_.size() && is_space(s_[pos_])) {
        line_starting = s_[pos_] == '\n';
        line_ += s_[pos_] == '\n';
        ++pos_;
      }
    } else if (!var && !plus && pos_ < s_.size() && s_[pos_] == '\n') {  // trim_blocks
      ++pos_;
      ++line_;
      line_starting = true;
    }
  }
  bool is_raw(size_t p) const {
    while (p < s_.size() && is_space(s_[p])) ++p;
    if (s_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < s_.size() && is_space(s_[p])) ++p;
    return s_.compare(p, 2, "%}") == 0 || s_.compare(p, 3, "-%}") == 0 || s_.compare(p, 3, "+%}") == 0;
  }
  void lex_raw(bool& line_starting) {
    size_t close = s_.find("%}", pos_);
    after_tag(close, line_starting, pos_);
    // The body runs to {% endraw %} (with optional modifiers and spaces).
    for (size_t k = s_.find("{%", pos_); k != std::string::npos; k = s_.find("{%", k + 2)) {
      size_t p = k + 2;
      const bool minus = p < s_.size() && s_[p] == '-';
      if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
      while (p < s_.size() && is_space(s_[p])) ++p;
      if (s_.compare(p, 6, "endraw") != 0) continue;
      std::string body = s_.substr(pos_, k - pos_);
      if (minus)
        while (!body.empty() && is_space(body.back())) body.pop_back();
      emit_text(body);
      const size_t close = s_.find("%}", p);
      if (close == std::string::npos) fail_at("unclosed endraw");
      after_tag(close, line_starting, p);
      return;
    }
    fail_at("{% raw %} without {% endraw %}");
  }

  void lex_expression(const char* close, bool& line_starting) {
    while (true) {
      while (pos_ < s_.size() && is_space(s_[pos_])) line_ += s_[pos_++] == '\n';
      if (pos_ >= s_.size()) fail_at(std::string("missing ") + close);
      for (const char* m : {"-", "+", ""}) {
        const size_t n = std::strlen(m);
        if (s_.compare(pos_, n, m) == 0 && s_.compare(pos_ + n, 2, close) == 0) {
          const size_t end = pos_ + n;
          toks_.push_back({close[0] == '}' ? Token::Type::VarEnd : Token::Type::BlockEnd, "", line_});
          after_tag(end, line_starting, pos_);
          return;
        }
      }
      lex_one();
    }
  }

  void lex_one() {
    const char c = s_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t b = pos_;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
      toks_.push_back({Token::Type::Name, s_.substr(b, pos_ - b), line_});
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t b = pos_;
      bool is_float = false;
      while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
      if (pos_ + 1 < s_.size() && s_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(s_[pos_ + 1]))) {
        is_float = true;
        ++pos_;
        while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      }
      if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
        is_float = true;
        ++pos_;
        if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
        while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      }
      std::string num = s_.substr(b, pos_ - b);
      std::erase(num, '_');
      toks_.push_back({is_float ? Token::Type::Float : Token::Type::Int, num, line_});
    } else if (c == '\'' || c == '"') {
      toks_.push_back({Token::Type::String, lex_string(c), line_});
    } else {
      static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                  "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";"};
      for (const char* op : ops)
        if (s_.compare(pos_, std::strlen(op), op) == 0) {
          toks_.push_back({Token::Type::Op, op, line_});
          pos_ += std::strlen(op);
          return;
        }
      fail_at(fmt::format("unexpected character '{}'", c));
    }
  }

  // A Python string literal (the escapes Jinja's lexer decodes).
  std::string lex_string(char q) {
    std::string out;
    ++pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      char c = s_[pos_++];
      if (c == '\n') ++line_;
      if (c != '\\' || pos_ >= s_.size()) {
        out += c;
        continue;
      }
      char e = s_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '0': out += '\0'; break;
        case '\n': break;
        case 'u':
        case 'x': {
          const size_t n = e == 'u' ? 4 : 2;
          if (pos_ + n > s_.size()) fail_at("bad escape in string");
          unsigned cp = unsigned(std::stoul(s_.substr(pos_, n), nullptr, 16));
          pos_ += n;
          if (cp < 0x80) {
            out += char(cp);
          } else if (cp < 0x800) {
            out += char(0xc0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3f));
          } else {
            out += char(0xe0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
          }
          break;
        }
        default: out += '\\'; out += e;
      }
    }
    if (pos_ >= s_.size()) fail_at("unterminated string");
    ++pos_;
    return out;
  }

  std::string s_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> toks_;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(source).run(); }

}  // namespace ds::chat::jinja
