// Broken or unsupported tokenizer.json files are refused with a message that names the problem.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace ds::tok {
namespace {

std::string bad(const std::string& name) { return DS_SOURCE_DIR "/tests/fixtures/tokenizer/bad/" + name + ".json"; }

// Loading `name` must throw ds::Error whose message contains every one of `words`.
void expect_error(const std::string& name, std::initializer_list<const char*> words) {
  try {
    Tokenizer::load(bad(name));
    ADD_FAILURE() << name << ": loaded without error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const char* w : words) EXPECT_NE(msg.find(w), std::string::npos) << name << ": \"" << msg << "\" lacks " << w;
    EXPECT_NE(msg.find(name), std::string::npos) << "the message names the file: " << msg;
  }
}

TEST(TokenizerErrors, MissingModel) { expect_error("missing_model", {"\"model\""}); }
TEST(TokenizerErrors, MergeThatIsNotAPair) { expect_error("merge_not_a_pair", {"bad merge", "a b c"}); }
TEST(TokenizerErrors, MergeOutOfVocab) { expect_error("merge_out_of_vocab", {"merge", "not in the vocab"}); }
TEST(TokenizerErrors, UnknownPreTokenizerType) { expect_error("unknown_pre_tokenizer", {"pre-tokenizer", "Whitespace"}); }
TEST(TokenizerErrors, UnknownSplitBehavior) { expect_error("unknown_split_behavior", {"behavior", "Sideways"}); }
TEST(TokenizerErrors, RegexThatDoesNotCompile) { expect_error("bad_regex", {"compile", "(unclosed"}); }
TEST(TokenizerErrors, NoByteLevel) { expect_error("no_byte_level", {"ByteLevel"}); }
TEST(TokenizerErrors, UnknownNormalizer) { expect_error("unknown_normalizer", {"normalizer", "NFKC"}); }
TEST(TokenizerErrors, UnknownDecoder) { expect_error("unknown_decoder", {"decoder", "WordPiece"}); }
TEST(TokenizerErrors, UnknownModel) { expect_error("unknown_model", {"model type", "Unigram"}); }
TEST(TokenizerErrors, ByteFallback) { expect_error("byte_fallback", {"byte_fallback"}); }
TEST(TokenizerErrors, AddedTokenTakingAVocabId) { expect_error("added_token_id_conflict", {"<x>", "id 5"}); }
TEST(TokenizerErrors, NotJson) { expect_error("not_json", {"not valid JSON"}); }

TEST(TokenizerErrors, MissingFileOrDirectory) {
  EXPECT_THROW(Tokenizer::load(DS_SOURCE_DIR "/tests/fixtures/tokenizer/bad/none.json"), Error);
  EXPECT_THROW(Tokenizer::load(DS_SOURCE_DIR "/tests/fixtures"), Error);  // a directory without tokenizer.json
}

TEST(TokenizerErrors, BadConfig) {
  std::ifstream f(DS_SOURCE_DIR "/tests/fixtures/tokenizer/small/tokenizer.json");
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_THROW(Tokenizer::from_strings(ss.str(), R"({"bos_token": "<nope>"})"), Error);
  EXPECT_THROW(Tokenizer::from_strings(ss.str(), R"({"bos_token": 7})"), Error);
  EXPECT_THROW(Tokenizer::from_strings(ss.str(), "[1]"), Error);
  EXPECT_NO_THROW(Tokenizer::from_strings(ss.str(), R"({"bos_token": null})"));
}

}  // namespace
}  // namespace ds::tok
