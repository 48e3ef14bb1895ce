// A stand-in tokenizer for bench tests: one token per whitespace-separated word; ids index a
// small fixed vocabulary of words.
#pragma once
#include <sstream>

#include "bench/tokenizer.h"

namespace ds::bench::testing {

class WordTokenizer : public TextTokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::istringstream in{std::string(text)};
    std::vector<int32_t> ids;
    std::string w;
    while (in >> w) ids.push_back(static_cast<int32_t>(w.size() % 100));
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids) s += (s.empty() ? "w" : " w") + std::to_string(id);
    return s;
  }
  int32_t vocab_size() const override { return 100; }
};

}  // namespace ds::bench::testing
