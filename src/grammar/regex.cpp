#include "grammar/regex.h"

#include <cctype>

#include "grammar/text_cursor.h"
#include "util/error.h"

namespace ds::grammar {

namespace {

const CodepointRanges kDigit = {{'0', '9'}};
const CodepointRanges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const CodepointRanges kSpace = {{'\t', '\r'}, {' ', ' '}};  // PCRE2 without UCP: \t \n \v \f \r and space

class RegexParser {
 public:
  RegexParser(std::string_view pattern, const RegexOptions& opt) : in_(pattern, "regex"), opt_(opt) {}

  ExprPtr parse() {
    in_.eat('^');
    ExprPtr e = alternation();
    if (!in_.done()) {
      if (in_.peek() == ')') in_.error("unmatched ')'");
      in_.error("unexpected character");
    }
    return e;
  }

 private:
  ExprPtr chars(const CodepointRanges& r) { return opt_.char_set ? opt_.char_set(normalize(r)) : utf8_class(r); }

  ExprPtr alternation() {
    std::vector<ExprPtr> alts{sequence()};
    while (in_.eat('|')) alts.push_back(sequence());
    return alt(std::move(alts));
  }

  ExprPtr sequence() {
    std::vector<ExprPtr> items;
    while (!in_.done() && in_.peek() != '|' && in_.peek() != ')') {
      if (in_.peek() == '$' && in_.rest().size() == 1) {  // the end anchor; the match is whole anyway
        in_.next();
        break;
      }
      items.push_back(quantified(atom()));
    }
    return seq(std::move(items));
  }

  int number() {
    long v = 0;
    while (std::isdigit(uint8_t(in_.peek()))) {
      v = v * 10 + (in_.next() - '0');
      if (v > 100000) in_.error("repetition count too large");
    }
    return int(v);
  }

  ExprPtr quantified(ExprPtr e) {
    for (;;) {
      const size_t at = in_.pos();
      int lo, hi;
      const char c = in_.peek();
      if (c == '*') {
        in_.next(), lo = 0, hi = -1;
      } else if (c == '+') {
        in_.next(), lo = 1, hi = -1;
      } else if (c == '?') {
        in_.next(), lo = 0, hi = 1;
      } else if (c == '{' && (std::isdigit(uint8_t(in_.peek(1))) || (in_.peek(1) == ',' && std::isdigit(uint8_t(in_.peek(2)))))) {
        in_.next();
        lo = std::isdigit(uint8_t(in_.peek())) ? number() : 0;
        hi = lo;
        if (in_.eat(',')) hi = std::isdigit(uint8_t(in_.peek())) ? number() : -1;
        if (!in_.eat('}')) in_.error_at(at, "malformed {m,n} quantifier");
        if (hi >= 0 && hi < lo) in_.error_at(at, "quantifier {m,n} with n < m");
      } else {
        return e;
      }
      if (in_.peek() == '+') in_.error_at(at, "possessive quantifiers are not supported");
      in_.eat('?');  // lazy: the same language
      e = repeat(e, lo, hi);
    }
  }

  ExprPtr atom() {
    const size_t at = in_.pos();
    const char c = in_.peek();
    switch (c) {
      case '(': {
        in_.next();
        if (in_.eat('?')) {
          if (in_.eat(':')) {
          } else if (in_.eat('<') || in_.eat("P<")) {
            if (in_.peek() == '=' || in_.peek() == '!') in_.error_at(at, "lookbehind assertions are not supported");
            while (!in_.done() && in_.peek() != '>') in_.next();
            if (!in_.eat('>')) in_.error_at(at, "unterminated group name");
          } else if (in_.peek() == '=' || in_.peek() == '!') {
            in_.error_at(at, "lookahead assertions are not supported");
          } else {
            in_.error_at(at, "this group kind (inline flags, atomic groups, ...) is not supported");
          }
        }
        ExprPtr e = alternation();
        if (!in_.eat(')')) in_.error_at(at, "unclosed '('");
        return e;
      }
      case '[': return char_class();
      case '.': in_.next(); return chars(complement({{'\n', '\n'}}));
      case '^': in_.error("'^' is only supported at the start of the pattern");
      case '$': in_.error("'$' is only supported at the end of the pattern");
      case '*': case '+': case '?': in_.error("quantifier with nothing to repeat");
      case '\\': {
        in_.next();
        CodepointRanges set;
        if (class_escape(set)) return chars(set);
        const uint32_t cp = in_.escape();
        return chars({{cp, cp}});
      }
      default: {
        uint32_t cp = in_.next_codepoint();
        return chars({{cp, cp}});
      }
    }
  }

  // After a backslash: \d \w \s and negations, or the unsupported letter escapes. Consumes and
  // returns true for a class; otherwise consumes nothing (a single-character escape follows).
  bool class_escape(CodepointRanges& out) {
    const char c = in_.peek();
    const size_t at = in_.pos() - 1;
    switch (c) {
      case 'd': out = kDigit; break;
      case 'D': out = complement(kDigit); break;
      case 'w': out = kWord; break;
      case 'W': out = complement(kWord); break;
      case 's': out = kSpace; break;
      case 'S': out = complement(kSpace); break;
      case 'b': case 'B': in_.error_at(at, "word boundaries (\\b, \\B) are not supported");
      case 'A': case 'z': case 'Z': case 'G': in_.error_at(at, "anchors other than ^ and $ are not supported");
      case 'p': case 'P': in_.error_at(at, "Unicode properties (\\p{...}) are not supported");
      case 'k': case 'g': in_.error_at(at, "backreferences are not supported");
      default:
        if (c >= '1' && c <= '9') in_.error_at(at, "backreferences are not supported");
        return false;
    }
    in_.next();
    return true;
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
      if (in_.peek() == '[' && in_.peek(1) == ':') in_.error("POSIX classes [:name:] are not supported");
      CodepointRanges set;
      uint32_t lo;
      if (in_.eat('\\')) {
        if (class_escape(set)) {
          ranges.insert(ranges.end(), set.begin(), set.end());
          continue;
        }
        lo = in_.peek() == 'b' ? (in_.next(), 0x08) : in_.escape();
      } else {
        lo = in_.next_codepoint();
      }
      uint32_t hi = lo;
      if (in_.peek() == '-' && in_.peek(1) != ']' && in_.peek(1) != '\0') {
        in_.next();
        if (in_.eat('\\')) {
          if (class_escape(set)) in_.error_at(at, "a class escape cannot end a range");
          hi = in_.escape();
        } else {
          hi = in_.next_codepoint();
        }
        if (hi < lo) in_.error_at(at, "character class range out of order");
      }
      ranges.emplace_back(lo, hi);
    }
    return chars(negated ? complement(ranges) : ranges);
  }

  TextCursor in_;
  const RegexOptions& opt_;
};

}  // namespace

ExprPtr parse_regex(std::string_view pattern, const RegexOptions& options) { return RegexParser(pattern, options).parse(); }

Grammar regex_grammar(std::string_view pattern) {
  Grammar g;
  g.root = g.add_rule("root", parse_regex(pattern));
  return g;
}

}  // namespace ds::grammar
