// IncrementalDetokenizer: decode() one id at a time, holding back a split UTF-8 character.
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace ds::tok {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, bool skip_special_tokens)
    : impl_(tok.impl_), skip_special_(skip_special_tokens) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  const Tokenizer::Impl& m = *impl_;
  std::string out;
  switch (m.kind_of(id)) {
    case Tokenizer::Impl::kUndefined: break;
    case Tokenizer::Impl::kVocab: {
      // Only a trailing sequence that may still complete is held; everything before it is final
      // because the lossy decoder works left to right.
      pending_ += m.piece[size_t(id)];
      size_t used = utf8::append_lossy(out, pending_, /*final_chunk=*/false);
      pending_.erase(0, used);
      break;
    }
    case Tokenizer::Impl::kSpecial:
      if (skip_special_) break;
      [[fallthrough]];
    case Tokenizer::Impl::kAdded:
      out = flush();
      out += m.piece[size_t(id)];
      break;
  }
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out;
  utf8::append_lossy(out, pending_);
  pending_.clear();
  return out;
}

}  // namespace ds::tok
