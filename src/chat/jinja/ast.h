// The parsed template: one Node type for expressions and statements (a small tree walked by
// render.cpp / expr.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja/value.h"

namespace ds::chat::jinja {

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    // expressions
    Literal, Name, Attr, Item, Slice, Call, Filter, Test, Unary, Binary, Cond, ListLit, TupleLit, DictLit,
    // statements
    Text, Output, If, For, Set, SetBlock, Macro, Break, Continue,
  };
  Kind kind;
  int line = 0;
  std::string name;  // Name / Attr attribute / Filter / Test / Unary+Binary operator / Set target /
                     // Macro name / Text data
  Value value;       // Literal
  std::vector<NodePtr> kids;    // operands, call args, list items, dict keys+values alternating,
                                // If conditions, Slice start/stop/step (null when absent)
  std::vector<std::string> kw;  // keyword names of the last kw.size() kids (Call / Filter / Test)
  std::vector<Body> bodies;     // If: one per condition (+ else); For: body, else; Macro / SetBlock: body
  std::vector<std::string> targets;  // For loop variables; Set tuple targets; Macro parameter names
  std::vector<NodePtr> defaults;     // Macro parameter defaults (null when none)
  bool negated = false;              // Test: `is not`
  std::string attr;                  // Set: namespace attribute (`set ns.attr = ...`)
};

struct Template {
  Body body;
};

// Parses tokens (lexer.h) into a template. Throws UnsupportedError naming the construct and line.
Template parse_template(const std::string& source);

}  // namespace ds::chat::jinja
