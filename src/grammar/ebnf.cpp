#include "grammar/ebnf.h"

#include <cctype>
#include <set>

#include "grammar/text_cursor.h"
#include "util/error.h"

namespace ds::grammar {

namespace {

bool name_start(char c) { return std::isalpha(uint8_t(c)) || c == '_'; }
bool name_char(char c) { return std::isalnum(uint8_t(c)) || c == '_' || c == '-' || c == '.'; }

class EbnfParser {
 public:
  explicit EbnfParser(std::string_view text) : in_(text, "EBNF grammar") {}

  Grammar parse(const std::string& root_rule) {
    std::set<std::string> defined;
    skip_space();
    while (!in_.done()) {
      const size_t at = in_.pos();
      std::string name = read_name();
      if (name.empty()) in_.error("expected a rule name");
      skip_space();
      if (!in_.eat("::=")) in_.error("expected '::=' after rule name '" + name + "'");
      if (!defined.insert(name).second) in_.error_at(at, "rule '" + name + "' is defined twice");
      ExprPtr body = alternation();
      g_.rules[size_t(g_.rule_id(name))].body = body;
      skip_space();
    }
    g_.root = g_.find(root_rule);
    if (g_.root < 0) fail("EBNF grammar has no rule named '{}' (the start rule)", root_rule);
    return std::move(g_);
  }

 private:
  void skip_space() {
    for (;;) {
      while (!in_.done() && std::isspace(uint8_t(in_.peek()))) in_.next();
      if (in_.peek() != '#') return;
      while (!in_.done() && in_.peek() != '\n') in_.next();
    }
  }
  std::string read_name() {
    std::string name;
    if (!name_start(in_.peek())) return name;
    while (name_char(in_.peek())) name += in_.next();
    return name;
  }
  // At a name followed by ::= (the next rule begins)?
  bool at_rule_start() {
    const size_t p = in_.pos();
    std::string name = read_name();
    bool yes = false;
    if (!name.empty()) {
      skip_space();
      yes = in_.rest().substr(0, 3) == "::=";
    }
    in_.seek(p);
    return yes;
  }

  ExprPtr alternation() {
    std::vector<ExprPtr> alts{sequence()};
    for (;;) {
      skip_space();
      if (!in_.eat('|')) break;
      alts.push_back(sequence());
    }
    return alt(std::move(alts));
  }

  ExprPtr sequence() {
    std::vector<ExprPtr> items;
    for (;;) {
      skip_space();
      const char c = in_.peek();
      if (in_.done() || c == '|' || c == ')') break;
      if (name_start(c) && at_rule_start()) break;
      items.push_back(postfix(primary()));
    }
    return seq(std::move(items));
  }

  int number() {
    if (!std::isdigit(uint8_t(in_.peek()))) in_.error("expected a number");
    long v = 0;
    while (std::isdigit(uint8_t(in_.peek()))) {
      v = v * 10 + (in_.next() - '0');
      if (v > 100000) in_.error("repetition count too large");
    }
    return int(v);
  }

  ExprPtr postfix(ExprPtr e) {
    for (;;) {
      const char c = in_.peek();
      if (c == '*') {
        in_.next();
        e = star(e);
      } else if (c == '+') {
        in_.next();
        e = plus(e);
      } else if (c == '?') {
        in_.next();
        e = optional(e);
      } else if (c == '{') {
        const size_t at = in_.pos();
        in_.next();
        skip_space();
        int lo = 0, hi = -1;
        if (in_.peek() != ',') lo = number();
        skip_space();
        if (in_.eat(',')) {
          skip_space();
          if (in_.peek() != '}') hi = number();
        } else {
          hi = lo;
        }
        skip_space();
        if (!in_.eat('}')) in_.error("expected '}' to close the repetition");
        if (hi >= 0 && hi < lo) in_.error_at(at, "repetition {m,n} with n < m");
        e = repeat(e, lo, hi);
      } else {
        return e;
      }
    }
  }

  ExprPtr primary() {
    const char c = in_.peek();
    if (c == '"' || c == '\'') return string_literal();
    if (c == '[') return char_class();
    if (c == '(') {
      const size_t at = in_.pos();
      in_.next();
      if (in_.peek() == '=') in_.error_at(at, "lookahead assertions '(= ...)' are not supported");
      ExprPtr e = alternation();
      skip_space();
      if (!in_.eat(')')) in_.error_at(at, "unclosed '('");
      return e;
    }
    if (name_start(c)) return ref(g_.rule_id(read_name()));
    in_.error(std::string("unexpected '") + c + "'");
  }

  ExprPtr string_literal() {
    const size_t at = in_.pos();
    const char quote = in_.next();
    std::string bytes;
    for (;;) {
      if (in_.done() || in_.peek() == '\n') in_.error_at(at, "unterminated string");
      if (in_.eat(quote)) break;
      uint32_t cp = in_.eat('\\') ? in_.escape() : in_.next_codepoint();
      append_utf8(bytes, cp);
    }
    return literal(bytes);
  }

  ExprPtr char_class() {
    const size_t at = in_.pos();
    in_.next();
    const bool negated = in_.eat('^');
    CodepointRanges ranges;
    bool first = true;
    for (;;) {
      if (in_.done()) in_.error_at(at, "unterminated character class");
      if (in_.peek() == ']' && !first) {
        in_.next();
        break;
      }
      first = false;
      uint32_t lo = class_char();
      uint32_t hi = lo;
      if (in_.peek() == '-' && in_.peek(1) != ']') {
        in_.next();
        hi = class_char();
        if (hi < lo) in_.error_at(at, "character class range out of order");
      }
      ranges.emplace_back(lo, hi);
    }
    return utf8_class(negated ? complement(ranges) : ranges);
  }
  uint32_t class_char() {
    if (in_.eat('\\')) return in_.escape();
    return in_.next_codepoint();
  }

  TextCursor in_;
  Grammar g_;
};

}  // namespace

Grammar parse_ebnf(std::string_view text, const std::string& root_rule) { return EbnfParser(text).parse(root_rule); }

}  // namespace ds::grammar
