// EBNF grammars in the GBNF-like syntax of xgrammar / SGLang (`ebnf` request parameter):
//
//   root   ::= "{" ws pair ("," ws pair)* "}"     # the start rule is `root`
//   pair   ::= name ws ":" ws [0-9]+ | "x"{2,3}
//   name   ::= [a-zA-Z_] [a-zA-Z0-9_]*
//
// Strings "..." (or '...') with \n \r \t \\ \" \' \xHH \uHHHH \UHHHHHHHH escapes, character
// classes [a-z] / [^...] over code points, grouping, | * + ? {n} {n,} {n,m} {,m}, # comments.
// Left-recursive rules and lookahead assertions are refused with an error naming them.
#pragma once
#include <string>
#include <string_view>

#include "grammar/expr.h"

namespace ds::grammar {

// Throws ds::Error with line:column on a syntax error, or naming an undefined rule.
Grammar parse_ebnf(std::string_view text, const std::string& root_rule = "root");

}  // namespace ds::grammar
