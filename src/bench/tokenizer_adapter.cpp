// Placeholder until the tokenizer module lands; the integrator replaces this file with an adapter
// over ds::tok::Tokenizer.
#include "bench/tokenizer.h"
#include "util/error.h"

namespace ds::bench {

std::unique_ptr<TextTokenizer> load_text_tokenizer(const std::string& path) {
  (void)path;
  throw Error("--tokenizer support lands with the tokenizer module");
}

}  // namespace ds::bench
