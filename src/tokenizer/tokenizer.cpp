// encode / decode and the small accessors.
#include "tokenizer/tokenizer.h"

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace ds::tok {

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_bos) {
    DS_CHECK(m.bos >= 0, "tokenizer: encode with BOS asked, but the tokenizer has no BOS token");
    ids.push_back(m.bos);
  }
  thread_local std::vector<Segment> segments;
  thread_local std::vector<Range> words;
  segments.clear();
  m.splitter.split(text, segments);
  for (const Segment& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
      continue;
    }
    words.clear();
    m.pre.split(text.substr(s.begin, s.end - s.begin), s.begin, words);
    for (const Range& w : words) m.bpe.encode_word(text.substr(w.first, w.second - w.first), ids);
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  // HF: vocab tokens are collected and their bytes decoded lossily as one run; an added token
  // ends the run and is appended as is; skipped specials do not end it.
  std::string out, run;
  for (int32_t id : ids) {
    switch (m.kind_of(id)) {
      case Impl::kUndefined: break;
      case Impl::kVocab: run += m.piece[size_t(id)]; break;
      case Impl::kSpecial:
        if (skip_special_tokens) break;
        [[fallthrough]];
      case Impl::kAdded:
        utf8::append_lossy(out, run);
        run.clear();
        out += m.piece[size_t(id)];
        break;
    }
  }
  utf8::append_lossy(out, run);
  return out;
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->kind.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_ids.find(std::string(token)); it != impl_->added_ids.end()) return it->second;
  return impl_->bpe.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  switch (impl_->kind_of(id)) {
    case Impl::kUndefined: fail("tokenizer: id {} is not defined (vocab size {})", id, vocab_size());
    case Impl::kVocab: return *impl_->bpe.id_to_token(id);
    default: return impl_->piece[size_t(id)];
  }
}

bool Tokenizer::is_special(int32_t id) const { return impl_->kind_of(id) == Impl::kSpecial; }
bool Tokenizer::is_added(int32_t id) const {
  Impl::Kind k = impl_->kind_of(id);
  return k == Impl::kSpecial || k == Impl::kAdded;
}
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace ds::tok
