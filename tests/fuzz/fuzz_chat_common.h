// Shared by the chat fuzzers: cut the input into chunks chosen by the input itself and
// check the streamed result equals the one-shot parse.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "chat/output_parser.h"

namespace ds::chat::fuzz {

// First byte: flags for the caller; next bytes: chunk lengths (1..16) until a 0 byte; the
// rest is the text.
struct FuzzInput {
  std::uint8_t flags = 0;
  std::vector<size_t> cuts;
  std::string text;
};

inline FuzzInput split_input(const std::uint8_t* data, size_t size) {
  FuzzInput in;
  if (size == 0) return in;
  in.flags = data[0];
  size_t i = 1;
  std::vector<size_t> lens;
  while (i < size && data[i] != 0 && lens.size() < 64) lens.push_back(data[i++] % 16 + 1);
  if (i < size) ++i;
  in.text.assign(reinterpret_cast<const char*>(data + i), size - i);
  size_t pos = 0;
  for (size_t k = 0; pos < in.text.size(); k = (k + 1) % (lens.empty() ? 1 : lens.size())) {
    pos += lens.empty() ? 1 : lens[k];
    if (pos < in.text.size()) in.cuts.push_back(pos);
  }
  return in;
}

inline ParsedMessage streamed(const OutputParserOptions& opt, const FuzzInput& in) {
  ChatOutputParser p(opt);
  ParsedMessage msg;
  size_t prev = 0;
  for (size_t c : in.cuts) {
    accumulate(msg, p.feed(std::string_view(in.text).substr(prev, c - prev)));
    prev = c;
  }
  accumulate(msg, p.feed(std::string_view(in.text).substr(prev)));
  accumulate(msg, p.finish());
  return msg;
}

inline void check_same(const ParsedMessage& a, const ParsedMessage& b) {
  bool same = a.reasoning_content == b.reasoning_content && a.content == b.content &&
              a.tool_calls.size() == b.tool_calls.size();
  for (size_t i = 0; same && i < a.tool_calls.size(); ++i)
    same = a.tool_calls[i].name == b.tool_calls[i].name && a.tool_calls[i].arguments == b.tool_calls[i].arguments;
  if (!same) std::abort();
}

}  // namespace ds::chat::fuzz
