// HF's added tokens: strings (mostly the special tokens) that are cut out of the text before
// pre-tokenization and map to one id each. Matching is leftmost-longest and non-overlapping, in
// two passes like HF: first the tokens with normalized=false, then (in the remaining pieces) the
// ones with normalized=true. There is no normalizer to run in between (only the empty one is
// supported), so both passes match the raw text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace ds::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;       // also swallow whitespace before the token
  bool rstrip = false;       // ... and after it
  bool single_word = false;  // only match when not inside a word
};

struct Segment {
  size_t begin, end;  // byte range of the text
  int32_t id;         // the added token's id, or -1 for text to pre-tokenize
};

class AddedTokenSplitter {
 public:
  AddedTokenSplitter();
  explicit AddedTokenSplitter(const std::vector<AddedToken>& tokens);

  // Cuts text into segments, in order, covering all of it except whitespace taken by lstrip/rstrip.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // A byte trie of token contents; one per pass.
  struct Trie {
    struct Node {
      int32_t token = -1;  // index into tokens_ when a token ends here
      std::vector<std::pair<uint8_t, int32_t>> kids;
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    void add(std::string_view s, int32_t token);
    // Longest token starting at text[pos], or -1; its length in len.
    int32_t longest_at(std::string_view text, size_t pos, size_t& len) const;
  };
  void split_pass(const Trie& trie, std::string_view text, size_t base, std::vector<Segment>& out) const;
  bool word_char_before(std::string_view text, size_t pos) const;
  bool word_char_at(std::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  Trie raw_, normalized_;
  Regex word_;  // \w, for single_word
};

}  // namespace ds::tok
