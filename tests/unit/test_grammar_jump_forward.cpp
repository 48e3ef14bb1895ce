// Jump-forward planning (grammar/jump_forward.h): the tokens a grammar forces, split by the tokenizer where
// its tokens spell the bytes (else longest match over the grammar's vocabulary), the last one handed back
// when a longer token could take its place, the stop token where the grammar must end, max_tokens, and
// the matcher left as it was.
#include <gtest/gtest.h>

#include "grammar/jump_forward.h"
#include "grammar_test_util.h"
#include "tokenizer_test_util.h"

namespace ds::grammar {
namespace {

using testing::byte_vocab;
using testing::compile_spec;

std::string bytes_of(const TokenTable& v, const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += v.bytes(id);
  return s;
}

// A few pieces over single bytes; the stop token is the last id.
std::shared_ptr<const TokenTable> piece_vocab() {
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.push_back(std::string(1, char(b)));
  for (const char* s : {"ab", "abc", "abx", "{\"", "\":", " \""}) t.push_back(s);
  t.push_back("");
  const int32_t stop = int32_t(t.size()) - 1;
  return TokenTable::from_bytes(std::move(t), {stop});
}

TEST(GrammarJumpForward, ForcedBytesAsLongestMatchTokensThenStop) {
  auto v = piece_vocab();
  auto g = compile_spec(GrammarKind::Ebnf, R"(root ::= "{\"a\": 12}")", v);
  GrammarMatcher m(g);
  JumpForwardOptions o;
  o.max_tokens = 100;
  const std::vector<int32_t> ids = jump_forward_tokens(m, nullptr, -1, o);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), v->stop_ids()[0]) << "nothing but the end follows: the stop token too";
  const std::vector<int32_t> text(ids.begin(), ids.end() - 1);
  EXPECT_EQ(bytes_of(*v, text), "{\"a\": 12}");
  EXPECT_EQ(text, longest_match_tokens(*v, "{\"a\": 12}"));
  EXPECT_EQ(text.front(), 256 + 3) << "the piece {\" rather than two bytes";
  EXPECT_EQ(m.steps_accepted(), 0u) << "the matcher is left as it was";
  EXPECT_EQ(m.forced_bytes(), "{\"a\": 12}");

  o.may_stop = false;  // without the stop token
  EXPECT_EQ(jump_forward_tokens(m, nullptr, -1, o), text);
  o.max_tokens = 2;  // max_tokens inside the run: its first tokens, none handed back
  EXPECT_EQ(jump_forward_tokens(m, nullptr, -1, o), std::vector<int32_t>(text.begin(), text.begin() + 2));
  o.max_tokens = 0;
  EXPECT_TRUE(jump_forward_tokens(m, nullptr, -1, o).empty());
}

TEST(GrammarJumpForward, LastTokenHandedBackWhenALongerOneIsAllowed) {
  auto v = piece_vocab();
  JumpForwardOptions o;
  o.max_tokens = 100;
  // "ab" is forced; "abc" would be allowed next to it (c is a letter): hand "ab" back, nothing is left.
  auto letters = compile_spec(GrammarKind::Ebnf, R"(root ::= "xyab" [a-z]+)", v);
  GrammarMatcher m1(letters);
  std::vector<int32_t> ids = jump_forward_tokens(m1, nullptr, -1, o);
  EXPECT_EQ(bytes_of(*v, ids), "xy");
  // After "ab" only digits: no longer token fits, "ab" stays.
  auto digits = compile_spec(GrammarKind::Ebnf, R"(root ::= "xyab" [0-9]+)", v);
  GrammarMatcher m2(digits);
  ids = jump_forward_tokens(m2, nullptr, -1, o);
  EXPECT_EQ(bytes_of(*v, ids), "xyab");
  EXPECT_EQ(ids.back(), 256) << "the piece ab";
  // Nothing forced: nothing.
  auto free = compile_spec(GrammarKind::Ebnf, R"(root ::= [a-z]+)", v);
  GrammarMatcher m3(free);
  EXPECT_TRUE(jump_forward_tokens(m3, nullptr, -1, o).empty());
  // Once a free part is done, the closing is forced (with the stop token).
  ASSERT_TRUE(m2.accept_bytes("xyab7"));
  auto closing = compile_spec(GrammarKind::Ebnf, R"(root ::= "[" [0-9] "]}")", v);
  GrammarMatcher m4(closing);
  ASSERT_TRUE(m4.accept_bytes("[7"));
  ids = jump_forward_tokens(m4, nullptr, -1, o);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(bytes_of(*v, ids), "]}");
}

TEST(GrammarJumpForward, Utf8CharactersAreNotCut) {
  EXPECT_EQ(utf8_whole_prefix("ab"), 2u);
  EXPECT_EQ(utf8_whole_prefix("a\xc3\xa9"), 3u);
  EXPECT_EQ(utf8_whole_prefix("a\xc3"), 1u);
  EXPECT_EQ(utf8_whole_prefix("a\xe6\x97"), 1u);
  EXPECT_EQ(utf8_whole_prefix("\xe6\x97\xa5"), 3u);
  EXPECT_EQ(utf8_whole_prefix(""), 0u);
  // enum ["é", "è"]: the lead byte alone is forced, and not taken.
  auto g = compile_spec(GrammarKind::Ebnf, "root ::= \"x\\u00e9\" | \"x\\u00e8\"", byte_vocab());
  GrammarMatcher m(g);
  JumpForwardOptions o;
  o.max_tokens = 10;
  EXPECT_EQ(m.forced_bytes(), "x\xc3");
  EXPECT_EQ(bytes_of(*byte_vocab(), jump_forward_tokens(m, nullptr, -1, o)), "x");
}

// DeepSeek's tokenizer: the forced text split as the tokenizer splits it, read together with the previous
// token where that one survives the joint encoding, else on its own.
TEST(GrammarJumpForward, TokenizerSplitIsCanonical) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  auto v = TokenTable::from_tokenizer(tok, {tok.eos_id()});
  const char* schema = R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
    "required":["name","age"],"additionalProperties":false})";
  JsonGrammarOptions fixed;
  fixed.fixed_separators = true;  // no free whitespace: the keys are forced text
  auto g = testing::compile_with(GrammarCompiler::build({GrammarKind::JsonSchema, schema}, fixed), v);
  EncodeFn encode = [&](std::string_view s) { return tok.encode(s); };
  JumpForwardOptions o;
  o.max_tokens = 100;
  GrammarMatcher m(g);
  const std::string start = m.forced_bytes();
  ASSERT_EQ(start, "{\"name\": \"");
  // At the start (the previous token is a special one, no bytes): the tokenizer's split of the forced
  // text, except a last token that a longer allowed one could replace.
  std::vector<int32_t> ids = jump_forward_tokens(m, encode, tok.eos_id(), o);
  std::vector<int32_t> canon = tok.encode(start);
  ASSERT_FALSE(ids.empty());
  ASSERT_LE(ids.size(), canon.size());
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), canon.begin())) << start;
  EXPECT_GE(ids.size() + 1, canon.size());
  EXPECT_EQ(ids.size() + 1, canon.size()) << "the opening quote of the free string is handed back: "
                                          << tok.decode(canon);
  // Between the two values: `, "age": ` follows the name's closing quote.
  for (int32_t id : tok.encode(start + "Bob")) ASSERT_TRUE(m.accept_token(id));
  const int32_t quote = tok.encode("\"")[0];
  ASSERT_TRUE(m.accept_token(quote));
  const std::string mid = m.forced_bytes();
  ASSERT_EQ(mid, ", \"age\": ") << mid;
  ids = jump_forward_tokens(m, encode, quote, o);
  std::vector<int32_t> joint = tok.encode("\"" + mid);
  canon = joint.front() == quote ? std::vector<int32_t>(joint.begin() + 1, joint.end()) : tok.encode(mid);
  ASSERT_FALSE(ids.empty());
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), canon.begin())) << tok.decode(ids) << " vs " << tok.decode(canon);
  EXPECT_EQ(tok.decode(ids), mid.substr(0, tok.decode(ids).size()));
  std::printf("start %s -> %zu tokens; after the name %s -> %zu tokens (joint split keeps the quote: %d)\n",
              start.c_str(), ids.size(), mid.c_str(), canon.size(), int(joint.front() == quote));
}

}  // namespace
}  // namespace ds::grammar
