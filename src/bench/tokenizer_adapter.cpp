// TextTokenizer over the real DeepSeek tokenizer (ds::tok), for prompt building and token counts.
#include "bench/tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace ds::bench {

namespace {
class DeepSeekTextTokenizer final : public TextTokenizer {
 public:
  explicit DeepSeekTextTokenizer(tok::Tokenizer t) : tok_(std::move(t)) {}
  std::vector<int32_t> encode(std::string_view text) const override { return tok_.encode(text, false); }
  std::string decode(std::span<const int32_t> ids) const override { return tok_.decode(ids, false); }
  int32_t vocab_size() const override { return tok_.vocab_size(); }

 private:
  tok::Tokenizer tok_;
};
}  // namespace

std::unique_ptr<TextTokenizer> load_text_tokenizer(const std::string& path) {
  return std::make_unique<DeepSeekTextTokenizer>(tok::Tokenizer::load(path));
}

}  // namespace ds::bench
