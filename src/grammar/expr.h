// The grammar engine's one source language: rules over bytes. Every front end (EBNF, regex, JSON
// Schema) builds a Grammar of these expressions; pda.h compiles it to one automaton per rule.
// Text is matched as UTF-8 bytes, so a character class becomes an alternation of byte sequences
// (utf8_class) and a token that ends inside a character is still accepted byte by byte.
#pragma once
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ds::grammar {

using ByteSet = std::bitset<256>;

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind { Bytes, Seq, Alt, Repeat, Ref };
  Kind kind = Kind::Seq;
  ByteSet bytes;               // Bytes: one byte from this set
  std::vector<ExprPtr> items;  // Seq (empty = the empty string), Alt (empty = nothing)
  int min = 0, max = 0;        // Repeat of items[0]: max < 0 is unbounded
  int rule = -1;               // Ref: rule index in the Grammar
};

// Builders.
ExprPtr empty();
ExprPtr nothing();  // matches no string at all
ExprPtr byte_set(const ByteSet& set);
ExprPtr byte_range(uint8_t lo, uint8_t hi);
ExprPtr literal(std::string_view bytes);
ExprPtr seq(std::vector<ExprPtr> items);
ExprPtr alt(std::vector<ExprPtr> items);
ExprPtr repeat(ExprPtr item, int min, int max);  // max < 0: unbounded
inline ExprPtr star(ExprPtr e) { return repeat(std::move(e), 0, -1); }
inline ExprPtr plus(ExprPtr e) { return repeat(std::move(e), 1, -1); }
inline ExprPtr optional(ExprPtr e) { return repeat(std::move(e), 0, 1); }
ExprPtr ref(int rule);

// Code point ranges [first, second], inclusive; surrogates (D800-DFFF) never match.
using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;
CodepointRanges normalize(CodepointRanges ranges);           // sorted, merged
CodepointRanges complement(const CodepointRanges& ranges);  // within 0..10FFFF
// One code point of the set, as its UTF-8 bytes (only shortest forms).
ExprPtr utf8_class(const CodepointRanges& ranges);
// Appends the UTF-8 bytes of code point cp.
void append_utf8(std::string& out, uint32_t cp);

struct Rule {
  std::string name;
  ExprPtr body;  // null until defined
};

struct Grammar {
  std::vector<Rule> rules;
  int root = -1;
  std::unordered_map<std::string, int> names;  // rule name -> index
  // Index of the rule with this name, added (undefined) if new.
  int rule_id(const std::string& name);
  int find(const std::string& name) const;  // -1 if absent
  // A new rule with a fresh name built from `hint`.
  int add_rule(const std::string& hint, ExprPtr body);
};

}  // namespace ds::grammar
