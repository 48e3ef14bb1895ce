#include "bench/math_expr.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <string>

namespace ds::bench {

namespace {

// Recursive descent over the text; `ok` turns false at the first thing that is not arithmetic.
//   expr  := term (('+' | '-') term)*
//   term  := unary (('*' | '/' | implicit) unary)*
//   unary := ('+' | '-') unary | power
//   power := atom ('^' unary)?          right-associative: 2^3^2 = 2^9
//   atom  := number | \pi | \frac A B | \sqrt[n] A | ( expr ) | { expr }
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  std::optional<double> run() {
    double v = expr();
    skip();
    if (!ok_ || pos_ != s_.size() || !std::isfinite(v)) return std::nullopt;
    return v;
  }

 private:
  static constexpr int kMaxDepth = 200;  // deep nesting is not an answer; refuse instead of overflowing
  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
  bool ok_ = true;

  double fail() {
    ok_ = false;
    return 0;
  }
  void skip() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  char peek() {
    skip();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  bool eat(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  // A backslash command such as \frac at the cursor (not a prefix of a longer name).
  bool at_command(std::string_view name) {
    skip();
    if (pos_ >= s_.size() || s_[pos_] != '\\' || s_.substr(pos_ + 1, name.size()) != name) return false;
    size_t end = pos_ + 1 + name.size();
    return end >= s_.size() || !std::isalpha(static_cast<unsigned char>(s_[end]));
  }
  bool eat_command(std::string_view name) {
    if (!at_command(name)) return false;
    pos_ += 1 + name.size();
    return true;
  }
  bool starts_atom() {
    char c = peek();
    if ((c >= '0' && c <= '9') || c == '.' || c == '(' || c == '{') return true;
    return at_command("frac") || at_command("sqrt") || at_command("pi");
  }

  double expr() {
    if (++depth_ > kMaxDepth) return fail();
    double v = term();
    while (ok_) {
      if (eat('+')) v += term();
      else if (eat('-')) v -= term();
      else break;
    }
    --depth_;
    return v;
  }

  double term() {
    double v = unary();
    while (ok_) {
      if (eat('*') || eat_command("cdot") || eat_command("times")) {
        v *= unary();
      } else if (eat('/') || eat_command("div")) {
        double d = unary();
        if (d == 0) return fail();
        v /= d;
      } else if (starts_atom()) {
        v *= unary();
      } else {
        break;
      }
    }
    return v;
  }

  double unary() {
    if (++depth_ > kMaxDepth) return fail();
    double v;
    if (eat('-')) v = -unary();
    else if (eat('+')) v = unary();
    else v = power();
    --depth_;
    return v;
  }

  double power() {
    double base = atom();
    if (!ok_ || !eat('^')) return base;
    double e = unary();
    if (!ok_) return 0;
    double v = std::pow(base, e);
    return std::isfinite(v) ? v : fail();
  }

  // One argument of \frac or \sqrt: a braced group, else a single digit or an atom ("\frac12").
  double argument() {
    char c = peek();
    if (c == '{') return atom();
    if (c >= '0' && c <= '9') {
      ++pos_;
      return c - '0';
    }
    if (c == '\\') return atom();
    return fail();
  }

  double number() {
    size_t start = pos_;
    while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    std::string text(s_.substr(start, pos_ - start));
    if (text == ".") return fail();
    return std::strtod(text.c_str(), nullptr);
  }

  double atom() {
    if (!ok_) return 0;
    char c = peek();
    if ((c >= '0' && c <= '9') || c == '.') return number();
    if (c == '(' || c == '{') {
      ++pos_;
      double v = expr();
      return eat(c == '(' ? ')' : '}') ? v : fail();
    }
    if (eat_command("pi")) return std::numbers::pi;
    if (eat_command("frac")) {
      double num = argument();
      double den = argument();
      if (!ok_ || den == 0) return fail();
      return num / den;
    }
    if (eat_command("sqrt")) {
      double index = 2;
      if (eat('[')) {
        index = expr();
        if (!eat(']') || index == 0) return fail();
      }
      double x = argument();
      if (!ok_) return 0;
      if (x < 0) {  // odd integer roots of negatives are real: \sqrt[3]{-8} = -2
        if (index != std::floor(index) || std::fmod(std::fabs(index), 2.0) != 1.0) return fail();
        return -std::pow(-x, 1.0 / index);
      }
      return std::pow(x, 1.0 / index);
    }
    return fail();
  }
};

}  // namespace

std::optional<double> eval_math_expr(std::string_view expr) {
  if (expr.find_first_not_of(" \t\n") == std::string_view::npos) return std::nullopt;
  return Parser(expr).run();
}

}  // namespace ds::bench
