// Output text with stop strings, token by token, on the real DeepSeek tokenizer.
#include <gtest/gtest.h>

#include "runtime/output_text.h"
#include "tokenizer_test_util.h"

using ds::runtime::OutputText;

namespace {
struct StopRun {
  std::string text;
  std::optional<std::string> matched;
  size_t tokens_used = 0;
};

StopRun run(const ds::tok::Tokenizer& tok, const std::string& output, std::vector<std::string> stop, bool no_trim = false) {
  OutputText t(tok, true, std::move(stop), no_trim);
  StopRun r;
  for (int32_t id : tok.encode(output)) {
    ++r.tokens_used;
    auto s = t.push(id);
    r.text += s.text;
    if (s.matched) {
      r.matched = s.matched;
      return r;
    }
  }
  r.text += t.finish();
  return r;
}
}  // namespace

TEST(OutputText, NoStopStringsPassesEverything) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  EXPECT_EQ(run(tok, "Hello, world! 你好", {}).text, "Hello, world! 你好");
}

TEST(OutputText, StopStringIsCutAndNotEmitted) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  StopRun r = run(tok, "The answer is 42.\n\nQuestion: next", {"Question:"});
  EXPECT_EQ(r.text, "The answer is 42.\n\n");
  ASSERT_TRUE(r.matched);
  EXPECT_EQ(*r.matched, "Question:");
  EXPECT_LT(r.tokens_used, tok.encode("The answer is 42.\n\nQuestion: next").size()) << "stops at the match";
}

TEST(OutputText, StopStringInsideATokenAndNoTrim) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  // "ell" is inside the token(s) of "Hello": the text before it is emitted, nothing after.
  EXPECT_EQ(run(tok, "Hello there", {"ell"}).text, "H");
  EXPECT_EQ(run(tok, "Hello there", {"ell"}, true).text, "Hell");
  // The earliest of several stop strings wins.
  EXPECT_EQ(run(tok, "one two three", {"three", "two"}).text, "one ");
}

TEST(OutputText, HeldBackPrefixIsReleasedWhenItDoesNotMatch) {
  DS_REQUIRE_REAL_TOKENIZER(tok);
  OutputText t(tok, true, {"STOP!"}, false);
  std::string emitted;
  for (int32_t id : tok.encode("go STOP")) emitted += t.push(id).text;
  EXPECT_EQ(emitted.find("STOP"), std::string::npos) << "a possible stop prefix must be held back: " << emitted;
  emitted += t.finish();
  EXPECT_EQ(emitted, "go STOP");
}
