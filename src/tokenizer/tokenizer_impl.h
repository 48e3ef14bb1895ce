// Tokenizer's loaded state, shared by the load, encode, decode and detokenizer files.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace ds::tok {

struct Tokenizer::Impl {
  enum Kind : uint8_t { kUndefined, kVocab, kAdded, kSpecial };

  BpeModel bpe;
  PreTokenizer pre;
  std::vector<AddedToken> added;
  AddedTokenSplitter splitter;
  std::unordered_map<std::string, int32_t> added_ids;  // content -> id

  // Per id: its kind and what decoding it appends (raw bytes for vocab ids, the content for added).
  std::vector<Kind> kind;
  std::vector<std::string> piece;

  int32_t bos = -1, eos = -1;
  bool add_bos = false;
  std::string chat_template;

  Kind kind_of(int32_t id) const { return id >= 0 && size_t(id) < kind.size() ? kind[size_t(id)] : kUndefined; }
};

}  // namespace ds::tok
