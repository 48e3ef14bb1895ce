// IncrementalDetokenizer: any id stream, fed one id at a time, gives decode()'s text in pieces
// that are each valid UTF-8.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace ds::tok {
namespace {

std::string stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer d(tok, skip);
  std::string all;
  for (int32_t id : ids) {
    std::string chunk = d.push(id);
    EXPECT_TRUE(utf8::is_valid(chunk));
    all += chunk;
  }
  std::string rest = d.flush();
  EXPECT_TRUE(utf8::is_valid(rest));
  return all + rest;
}

TEST(Detokenizer, RandomStreamsEqualFullDecode) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  // Ids that split characters: the byte tokens of 你, 😀 and é, alone and in order.
  std::vector<int32_t> pool;
  for (const char* s : {"你", "😀", "é", "\xe4", "\xbd", "\xa0", "\xf0", "\x9f"}) {
    std::string t = s;
    for (unsigned char c : t) {
      std::string one(1, char(c));
      auto ids = tok.encode(one);
      pool.insert(pool.end(), ids.begin(), ids.end());
    }
  }
  std::mt19937 rng(3);
  for (int it = 0; it < 3000; ++it) {
    std::vector<int32_t> ids(rng() % 24);
    for (int32_t& id : ids) {
      switch (rng() % 6) {
        case 0: id = pool[rng() % pool.size()]; break;
        case 1: id = int32_t(rng() % 128000); break;                 // any vocab token
        case 2: id = int32_t(128798 + rng() % 17); break;            // specials and added tokens
        case 3: id = int32_t(rng() % 3); break;                      // BOS, EOS, pad
        case 4: id = rng() % 2 ? -1 - int32_t(rng() % 9) : 128815 + int32_t(rng() % 500); break;  // undefined
        default: id = pool[rng() % pool.size()];
      }
    }
    for (bool skip : {false, true}) EXPECT_EQ(stream(tok, ids, skip), tok.decode(ids, skip));
  }
}

TEST(Detokenizer, EncodedTextStreamsBackExactly) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  for (const auto& e : testing::hf_fixture()) {
    auto ids = e["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(stream(tok, ids, false), e["decoded"].get<std::string>());
    EXPECT_EQ(stream(tok, ids, true), tok.decode(ids, true));
  }
}

TEST(Detokenizer, HoldsASplitCharacterUntilComplete) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto b = [&](unsigned char c) { return tok.encode(std::string(1, char(c))).at(0); };
  IncrementalDetokenizer d(tok, true);
  EXPECT_EQ(d.push(b(0xe4)), "");
  EXPECT_EQ(d.push(0), "");  // a skipped special does not cut the character
  EXPECT_EQ(d.push(b(0xbd)), "");
  EXPECT_EQ(d.push(b(0xa0)), "你");
  EXPECT_EQ(d.push(b(0xe4)), "");
  EXPECT_EQ(d.push(128803), "\xEF\xBF\xBD<｜User｜>");  // an added token ends the run
  EXPECT_EQ(d.push(b(0xf0)), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(d.flush(), "");
}

}  // namespace
}  // namespace ds::tok
