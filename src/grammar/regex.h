// Regular expressions in a PCRE2 syntax subset, matched against the whole output (as SGLang's
// `regex` parameter): literals (UTF-8), ., [classes] with ranges and negation, \d \w \s \D \W \S,
// \n \r \t \f \v \e \a \0, \xHH, \x{H...}, \uHHHH, escaped punctuation, groups ( ), (?: ),
// (?<name> ), |, * + ? {n} {n,} {n,m} and their lazy forms (same language). ^ at the start and
// $ at the end are accepted (the match is whole anyway). Refused with an error naming the
// construct: backreferences, lookaround, \b, \p{...}, possessive quantifiers, inline flags.
#pragma once
#include <functional>
#include <string>
#include <string_view>

#include "grammar/expr.h"

namespace ds::grammar {

struct RegexOptions {
  // How one character from a set is written (JSON strings write '"' as \", etc.); default:
  // its UTF-8 bytes (utf8_class).
  std::function<ExprPtr(const CodepointRanges&)> char_set;
};

// Throws ds::Error naming the construct and its offset.
ExprPtr parse_regex(std::string_view pattern, const RegexOptions& options = {});
Grammar regex_grammar(std::string_view pattern);

}  // namespace ds::grammar
