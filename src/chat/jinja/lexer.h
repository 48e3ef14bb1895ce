// Jinja template source -> tokens, with the whitespace rules transformers' environment uses:
// trim_blocks (the first newline after a block or comment tag goes), lstrip_blocks (spaces and
// tabs before a block or comment tag at the start of a line go), `-` / `+` modifiers on tags,
// {% raw %}, line endings normalized to "\n" and one trailing newline dropped
// (keep_trailing_newline=False).
#pragma once
#include <string>
#include <vector>

namespace ds::chat::jinja {

struct Token {
  enum class Type { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };
  Type type;
  std::string text;  // Text: the data; String: the decoded value; Name/Op/Int/Float: as written
  int line = 1;
};

// Throws UnsupportedError (with the line) on malformed source.
std::vector<Token> tokenize(const std::string& source);

}  // namespace ds::chat::jinja
