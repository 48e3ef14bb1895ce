// The real DeepSeek-V3 tokenizer against Hugging Face `tokenizers` (fixture of 359 texts), the
// published V3.2 encode example, and the public API.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tokenizer_test_util.h"
#include "util/error.h"

namespace ds::tok {
namespace {
using testing::hf_fixture;

TEST(TokenizerHF, EveryFixtureTextEncodesAndDecodesExactly) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto fx = hf_fixture();
  ASSERT_EQ(fx.size(), 359u);
  size_t ids_ok = 0, decode_ok = 0;
  for (const auto& e : fx) {
    std::string text = e["text"];
    auto want = e["ids"].get<std::vector<int32_t>>();
    auto got = tok.encode(text);
    if (got == want)
      ++ids_ok;
    else
      ADD_FAILURE() << "ids differ for text: " << nlohmann::json(text).dump() << "\n  got  "
                    << nlohmann::json(got).dump() << "\n  want " << nlohmann::json(want).dump();
    std::string dec = tok.decode(want);
    if (dec == e["decoded"].get<std::string>())
      ++decode_ok;
    else
      ADD_FAILURE() << "decode differs for text: " << nlohmann::json(text).dump();
    EXPECT_EQ(tok.decode(got), text);
  }
  EXPECT_EQ(ids_ok, fx.size());
  EXPECT_EQ(decode_ok, fx.size());
  std::printf("exact ids: %zu/%zu, exact decode: %zu/%zu\n", ids_ok, fx.size(), decode_ok, fx.size());
}

TEST(TokenizerHF, OneMegabyteTextRoundTrips) {
  // The whole corpus as one text must still decode back to itself.
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::string big;
  for (const auto& e : hf_fixture()) big += e["text"].get<std::string>();
  while (big.size() < (1u << 20)) big += big;
  EXPECT_EQ(tok.decode(tok.encode(big)), big);
}

TEST(TokenizerAPI, RealFileBasics) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  EXPECT_EQ(tok.vocab_size(), 128815);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_TRUE(tok.add_bos_token());  // the V3 tokenizer_config.json says true
  EXPECT_NE(tok.chat_template().find("<｜Assistant｜>"), std::string::npos);
  EXPECT_EQ(tok.token_to_id("<｜User｜>"), 128803);
  EXPECT_EQ(tok.token_to_id("Ġthe"), tok.encode(" the").at(0));
  EXPECT_EQ(tok.token_to_id("no such token at all"), std::nullopt);
  EXPECT_EQ(tok.id_to_token(tok.encode(" hello").at(0)), "Ġhello");
  EXPECT_EQ(tok.id_to_token(128803), "<｜User｜>");
  EXPECT_THROW(tok.id_to_token(-1), Error);
  EXPECT_THROW(tok.id_to_token(128815), Error);
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_TRUE(tok.is_special(128805));   // <|EOT|>
  EXPECT_FALSE(tok.is_special(128803));  // <｜User｜> is an added but not special token in V3
  EXPECT_TRUE(tok.is_added(128803));
  EXPECT_FALSE(tok.is_special(100));
  auto with_bos = tok.encode("hi", true);
  ASSERT_EQ(with_bos.size(), 2u);
  EXPECT_EQ(with_bos[0], 0);
}

TEST(TokenizerAPI, DecodeSkipsSpecialsAndUndefinedIds) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::vector<int32_t> ids = {0, 19923, 128803, -5, 999999, 128815, 1};
  EXPECT_EQ(tok.decode(ids), "<｜begin▁of▁sentence｜>Hello<｜User｜><｜end▁of▁sentence｜>");
  // <｜User｜> is not special in the V3 file, so it stays.
  EXPECT_EQ(tok.decode(ids, true), "Hello<｜User｜>");
}

TEST(TokenizerAPI, InvalidUtf8IsEncodedAsBytesAndDecodedAsReplacement) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  std::string text = "ab\xff\xfe cd \xe4\xbd";  // stray bytes and a truncated 你
  auto ids = tok.encode(text);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok.decode(ids), "ab\xEF\xBF\xBD\xEF\xBF\xBD cd \xEF\xBF\xBD");
  // Every byte survives in the ids.
  std::string bytes;
  for (int32_t id : ids) bytes += tok.id_to_token(id);
  EXPECT_NE(bytes.find("cd"), std::string::npos);
}

// V3's tokenizer.json with placeholders 128798/128799 renamed, as in V3.1+ checkpoints.
std::string v32_like_tokenizer_json() {
  auto j = testing::read_json(testing::npm_tokenizer_dir() + "/tokenizer.json");
  for (auto& t : j["added_tokens"]) {
    if (t["id"] == 128798) t["content"] = "<think>";
    if (t["id"] == 128799) t["content"] = "</think>";
  }
  return j.dump();
}

TEST(TokenizerHF, PublishedV32EncodeExample) {
  if (!testing::real_tokenizer()) GTEST_SKIP() << "npm tokenizer missing";
  auto tok = Tokenizer::from_strings(v32_like_tokenizer_json());
  std::string text =
      "<｜begin▁of▁sentence｜><｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek.<｜end▁of▁sentence｜>"
      "<｜User｜>1+1=?<｜Assistant｜><think>";
  std::vector<int32_t> want = {0,     128803, 33310, 128804, 128799, 19923, 3,      342,    1030, 22651, 4374,
                               1465,  16,     1,     128803, 19,     13,    19,     127252, 128804, 128798};
  EXPECT_EQ(tok.encode(text), want);
  EXPECT_EQ(tok.decode(want), text);
  EXPECT_EQ(tok.token_to_id("<think>"), 128798);
  EXPECT_EQ(tok.id_to_token(128799), "</think>");
  // The file decides: the original V3 file has no <think> token, so there it is plain text.
  DS_REQUIRE_REAL_TOKENIZER(v3);
  EXPECT_EQ(v3.token_to_id("<think>"), std::nullopt);
  EXPECT_GT(v3.encode("<think>").size(), 1u);
}

TEST(TokenizerAPI, LoadAcceptsFileOrDirectoryAndNamesMissingPaths) {
  if (!testing::real_tokenizer()) GTEST_SKIP() << "npm tokenizer missing";
  auto by_file = Tokenizer::load(testing::npm_tokenizer_dir() + "/tokenizer.json");
  EXPECT_EQ(by_file.encode("Hello, world!"), testing::real_tokenizer()->encode("Hello, world!"));
  EXPECT_FALSE(by_file.chat_template().empty());  // the sibling tokenizer_config.json is read
  try {
    Tokenizer::load("/nonexistent/dir");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir"), std::string::npos);
  }
}

TEST(TokenizerAPI, CopiesAndThreadsShareOneTokenizer) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto fx = hf_fixture();
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, copy = tok] {
      for (const auto& e : fx)
        if (copy.encode(e["text"].get<std::string>()) != e["ids"].get<std::vector<int32_t>>()) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace ds::tok
