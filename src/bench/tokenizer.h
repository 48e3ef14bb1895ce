// The few tokenizer operations the benchmark needs (dataset lengths, retokenized counts),
// behind an interface so that bench/ does not depend on the tokenizer module's types.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ds::bench {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  // Plain text -> ids, without special tokens (sglang calls encode(text, add_special_tokens=False)
  // for retokenized counts; prompt lengths count the same way here).
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual int32_t vocab_size() const = 0;
};

// Loads a tokenizer.json (a file or a directory holding one). Implemented in tokenizer_adapter.cpp.
std::unique_ptr<TextTokenizer> load_text_tokenizer(const std::string& path);

}  // namespace ds::bench
