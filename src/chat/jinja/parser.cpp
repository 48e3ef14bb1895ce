// Recursive descent over the tokens, following Jinja2's grammar and operator precedence:
// condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary, then postfix
// (. [] () | is). Statements: if/elif/else, for (with else, loop filter and unpacking), set
// (name, tuple, namespace attribute, block), macro, break/continue (loopcontrols), raw, and
// transformers' {% generation %}. Anything else is refused by name.
#include <fmt/format.h>

#include <set>

#include "chat/jinja/ast.h"
#include "chat/jinja/lexer.h"

namespace ds::chat::jinja {
namespace {

using T = Token::Type;
using K = Node::Kind;

NodePtr node(K kind, int line) {
  auto n = std::make_shared<Node>();
  n->kind = kind;
  n->line = line;
  return n;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Template run() {
    Template tpl;
    std::string end = parse_body(tpl.body, {});
    if (!end.empty()) fail(fmt::format("unexpected '{{% {} %}}'", end));
    return tpl;
  }

 private:
  const Token& peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  const Token& next() { return t_[std::min(p_++, t_.size() - 1)]; }
  bool is_op(const char* op, size_t k = 0) const { return peek(k).type == T::Op && peek(k).text == op; }
  bool is_name(const char* n, size_t k = 0) const { return peek(k).type == T::Name && peek(k).text == n; }
  [[noreturn]] void fail(const std::string& what) const {
    throw UnsupportedError(fmt::format("template line {}: {}", peek().line, what));
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(fmt::format("expected '{}', got '{}'", op, peek().text));
    next();
  }
  std::string expect_name() {
    if (peek().type != T::Name) fail(fmt::format("expected a name, got '{}'", peek().text));
    return next().text;
  }
  void expect_block_end() {
    if (peek().type != T::BlockEnd) fail(fmt::format("expected '%}}', got '{}'", peek().text));
    next();
  }

  // Parses statements until one of `ends` (a block tag name) opens; returns that name ("" at EOF).
  std::string parse_body(Body& body, const std::set<std::string>& ends) {
    while (peek().type != T::End) {
      const Token& tok = next();
      if (tok.type == T::Text) {
        auto n = node(K::Text, tok.line);
        n->name = tok.text;
        body.push_back(n);
      } else if (tok.type == T::VarBegin) {
        auto n = node(K::Output, tok.line);
        n->kids.push_back(parse_tuple_or_expr());
        if (peek().type != T::VarEnd) fail(fmt::format("expected '}}}}', got '{}'", peek().text));
        next();
        body.push_back(n);
      } else if (tok.type == T::BlockBegin) {
        const std::string tag = expect_name();
        if (ends.count(tag)) return tag;
        body.push_back(parse_statement(tag, tok.line));
      } else {
        fail("unexpected token");
      }
    }
    if (!ends.empty()) fail(fmt::format("missing '{{% {} %}}'", *ends.rbegin()));
    return "";
  }

  NodePtr parse_statement(const std::string& tag, int line) {
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "break" || tag == "continue") {
      expect_block_end();
      return node(tag == "break" ? K::Break : K::Continue, line);
    }
    if (tag == "generation") {  // transformers' AssistantTracker: renders its body as is
      expect_block_end();
      auto n = node(K::If, line);
      n->kids.push_back(literal(Value::boolean(true), line));
      n->bodies.emplace_back();
      parse_body(n->bodies.back(), {"endgeneration"});
      expect_block_end();
      return n;
    }
    fail(fmt::format("the '{{% {} %}}' statement is not supported", tag));
  }

  NodePtr literal(Value v, int line) {
    auto n = node(K::Literal, line);
    n->value = std::move(v);
    return n;
  }

  NodePtr parse_if(int line) {
    auto n = node(K::If, line);
    n->kids.push_back(parse_expr());
    expect_block_end();
    while (true) {
      n->bodies.emplace_back();
      std::string end = parse_body(n->bodies.back(), {"elif", "else", "endif"});
      if (end == "elif") {
        n->kids.push_back(parse_expr());
        expect_block_end();
      } else if (end == "else") {
        expect_block_end();
        n->bodies.emplace_back();
        parse_body(n->bodies.back(), {"endif"});
        expect_block_end();
        return n;
      } else {
        expect_block_end();
        return n;
      }
    }
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names{expect_name()};
    while (is_op(",")) {
      next();
      names.push_back(expect_name());
    }
    return names;
  }

  NodePtr parse_for(int line) {
    auto n = node(K::For, line);
    n->targets = parse_targets();
    if (!is_name("in")) fail("expected 'in' in for loop");
    next();
    n->kids.push_back(parse_expr(/*no_condexpr=*/true));
    n->kids.push_back(nullptr);
    if (is_name("if")) {
      next();
      n->kids[1] = parse_expr();
    }
    if (is_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    n->bodies.emplace_back();
    std::string end = parse_body(n->bodies.back(), {"else", "endfor"});
    n->bodies.emplace_back();
    if (end == "else") {
      expect_block_end();
      parse_body(n->bodies.back(), {"endfor"});
    }
    expect_block_end();
    return n;
  }

  NodePtr parse_set(int line) {
    const std::string first = expect_name();
    if (is_op(".")) {  // set ns.attr = value
      next();
      auto n = node(K::Set, line);
      n->name = first;
      n->attr = expect_name();
      expect_op("=");
      n->kids.push_back(parse_tuple_or_expr());
      expect_block_end();
      return n;
    }
    std::vector<std::string> names{first};
    while (is_op(",")) {
      next();
      names.push_back(expect_name());
    }
    if (peek().type == T::BlockEnd && names.size() == 1) {  // {% set x %}...{% endset %}
      next();
      auto n = node(K::SetBlock, line);
      n->name = first;
      n->bodies.emplace_back();
      parse_body(n->bodies.back(), {"endset"});
      expect_block_end();
      return n;
    }
    if (is_op("|")) fail("filtered {% set %} blocks are not supported");
    expect_op("=");
    auto n = node(K::Set, line);
    n->targets = names;
    n->kids.push_back(parse_tuple_or_expr());
    expect_block_end();
    return n;
  }

  NodePtr parse_macro(int line) {
    auto n = node(K::Macro, line);
    n->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!n->targets.empty()) expect_op(",");
      if (is_op(")")) break;
      n->targets.push_back(expect_name());
      if (is_op("=")) {
        next();
        n->defaults.push_back(parse_expr());
      } else {
        n->defaults.push_back(nullptr);
      }
    }
    next();
    expect_block_end();
    n->bodies.emplace_back();
    parse_body(n->bodies.back(), {"endmacro"});
    if (peek().type == T::Name) next();  // {% endmacro name %}
    expect_block_end();
    return n;
  }

  // ---- expressions ----
  NodePtr parse_tuple_or_expr() {
    const int line = peek().line;
    NodePtr first = parse_expr();
    if (!is_op(",")) return first;
    auto t = node(K::TupleLit, line);
    t->kids.push_back(first);
    while (is_op(",")) {
      next();
      if (peek().type == T::VarEnd || peek().type == T::BlockEnd || is_op(")")) break;
      t->kids.push_back(parse_expr());
    }
    return t;
  }

  NodePtr parse_expr(bool no_condexpr = false) {
    NodePtr e = parse_or();
    if (no_condexpr) return e;
    while (is_name("if")) {
      const int line = next().line;
      auto c = node(K::Cond, line);
      c->kids.push_back(parse_or());  // condition
      c->kids.push_back(e);           // then
      if (is_name("else")) {
        next();
        c->kids.push_back(parse_expr());
      } else {
        c->kids.push_back(nullptr);
      }
      e = c;
    }
    return e;
  }

  NodePtr binary(const std::string& op, NodePtr l, NodePtr r, int line) {
    auto n = node(K::Binary, line);
    n->name = op;
    n->kids = {std::move(l), std::move(r)};
    return n;
  }

  NodePtr parse_or() {
    NodePtr l = parse_and();
    while (is_name("or")) l = binary("or", l, (next(), parse_and()), peek().line);
    return l;
  }
  NodePtr parse_and() {
    NodePtr l = parse_not();
    while (is_name("and")) l = binary("and", l, (next(), parse_not()), peek().line);
    return l;
  }
  NodePtr parse_not() {
    if (is_name("not")) {
      auto n = node(K::Unary, next().line);
      n->name = "not";
      n->kids.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  NodePtr parse_compare() {
    NodePtr l = parse_math1();
    NodePtr chain;
    while (true) {
      std::string op;
      if (peek().type == T::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                   peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      NodePtr r = parse_math1();
      NodePtr cmp = binary(op, l, r, peek().line);
      chain = chain ? binary("and", chain, cmp, peek().line) : cmp;  // a < b < c
      l = r;
    }
    return chain ? chain : l;
  }
  NodePtr parse_math1() {
    NodePtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().text;
      l = binary(op, l, parse_concat(), peek().line);
    }
    return l;
  }
  NodePtr parse_concat() {
    NodePtr l = parse_math2();
    while (is_op("~")) {
      next();
      l = binary("~", l, parse_math2(), peek().line);
    }
    return l;
  }
  NodePtr parse_math2() {
    NodePtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().text;
      l = binary(op, l, parse_pow(), peek().line);
    }
    return l;
  }
  NodePtr parse_pow() {
    NodePtr l = parse_unary(true);
    while (is_op("**")) {
      next();
      l = binary("**", l, parse_unary(true), peek().line);
    }
    return l;
  }
  NodePtr parse_unary(bool with_filter) {
    NodePtr n;
    if (is_op("-") || is_op("+")) {
      n = node(K::Unary, peek().line);
      n->name = next().text;
      n->kids.push_back(parse_unary(false));
    } else {
      n = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters(n) : n;
  }

  NodePtr parse_primary() {
    const Token& tok = next();
    switch (tok.type) {
      case T::Name: {
        if (tok.text == "true" || tok.text == "True") return literal(Value::boolean(true), tok.line);
        if (tok.text == "false" || tok.text == "False") return literal(Value::boolean(false), tok.line);
        if (tok.text == "none" || tok.text == "None") return literal(Value::none(), tok.line);
        auto n = node(K::Name, tok.line);
        n->name = tok.text;
        return n;
      }
      case T::String: {
        std::string s = tok.text;
        while (peek().type == T::String) s += next().text;  // adjacent literals concatenate
        return literal(Value::string(s), tok.line);
      }
      case T::Int: return literal(Value::integer(std::stoll(tok.text)), tok.line);
      case T::Float: return literal(Value::number(std::stod(tok.text)), tok.line);
      case T::Op:
        if (tok.text == "(") {
          if (is_op(")")) {
            next();
            return node(K::TupleLit, tok.line);
          }
          NodePtr e = parse_tuple_or_expr();
          expect_op(")");
          return e;
        }
        if (tok.text == "[") {
          auto n = node(K::ListLit, tok.line);
          while (!is_op("]")) {
            if (!n->kids.empty()) expect_op(",");
            if (is_op("]")) break;
            n->kids.push_back(parse_expr());
          }
          next();
          return n;
        }
        if (tok.text == "{") {
          auto n = node(K::DictLit, tok.line);
          while (!is_op("}")) {
            if (!n->kids.empty()) expect_op(",");
            if (is_op("}")) break;
            n->kids.push_back(parse_expr());
            expect_op(":");
            n->kids.push_back(parse_expr());
          }
          next();
          return n;
        }
        break;
      default: break;
    }
    --p_;
    fail(fmt::format("unexpected '{}'", tok.text));
  }

  // Call arguments after '(' up to ')': positional, then name=value.
  void parse_call_args(Node& n) {
    std::vector<NodePtr> pos, kwv;
    while (!is_op(")")) {
      if (!pos.empty() || !kwv.empty()) expect_op(",");
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail("*args / **kwargs in calls are not supported");
      if (peek().type == T::Name && is_op("=", 1)) {
        n.kw.push_back(next().text);
        next();
        kwv.push_back(parse_expr());
      } else {
        pos.push_back(parse_expr());
      }
    }
    next();
    for (auto& a : pos) n.kids.push_back(a);
    for (auto& a : kwv) n.kids.push_back(a);
  }

  NodePtr parse_postfix(NodePtr n) {
    while (true) {
      if (is_op(".")) {
        next();
        auto a = node(K::Attr, peek().line);
        if (peek().type == T::Int) a->name = next().text;
        else a->name = expect_name();
        a->kids.push_back(n);
        n = a;
      } else if (is_op("[")) {
        next();
        n = parse_subscript(n);
      } else if (is_op("(")) {
        next();
        auto c = node(K::Call, peek().line);
        c->kids.push_back(n);
        parse_call_args(*c);
        n = c;
      } else {
        return n;
      }
    }
  }

  NodePtr parse_subscript(NodePtr obj) {
    const int line = peek().line;
    NodePtr parts[3] = {nullptr, nullptr, nullptr};
    int part = 0;
    bool slice = false;
    while (!is_op("]")) {
      if (is_op(":")) {
        next();
        slice = true;
        if (++part > 2) fail("bad slice");
        continue;
      }
      parts[part] = parse_expr();
    }
    next();
    auto n = node(slice ? K::Slice : K::Item, line);
    n->kids.push_back(obj);
    if (slice) {
      for (auto& p : parts) n->kids.push_back(p);
    } else {
      if (!parts[0]) fail("empty subscript");
      n->kids.push_back(parts[0]);
    }
    return n;
  }

  NodePtr parse_filters(NodePtr n) {
    while (true) {
      if (is_op("|")) {
        next();
        auto f = node(K::Filter, peek().line);
        f->name = expect_name();
        f->kids.push_back(n);
        if (is_op("(")) {
          next();
          parse_call_args(*f);
        }
        n = f;
      } else if (is_name("is")) {
        next();
        auto t = node(K::Test, peek().line);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = peek().type == T::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                           peek().text == ">" || peek().text == "<=" || peek().text == ">=")
                      ? next().text
                      : expect_name();
        if (t->name == "none" || t->name == "true" || t->name == "false") {  // keywords as test names
        }
        t->kids.push_back(n);
        if (is_op("(")) {
          next();
          parse_call_args(*t);
        } else if (peek().type == T::String || peek().type == T::Int || peek().type == T::Float ||
                   (peek().type == T::Name && !is_name("and") && !is_name("or") && !is_name("else") &&
                    !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is"))) {
          t->kids.push_back(parse_unary(false));  // `x is divisibleby 3`, `x is sameas none`
        }
        n = t;
      } else {
        return n;
      }
    }
  }

  std::vector<Token> t_;
  size_t p_ = 0;
};

}  // namespace

Template parse_template(const std::string& source) { return Parser(tokenize(source)).run(); }

}  // namespace ds::chat::jinja
