// Regex grammars against PCRE2 (the real engine, whole-string match, UTF mode) on generated
// strings: random strings over the pattern's own characters and sentences drawn from the grammar.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <gtest/gtest.h>

#include <random>

#include "grammar/regex.h"
#include "grammar_test_util.h"
#include "util/error.h"

namespace ds::grammar {
namespace {

class Pcre {
 public:
  explicit Pcre(const std::string& pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF, &err, &off, nullptr);
    if (!code_) throw std::runtime_error("pcre2 refused " + pattern);
    data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
  }
  ~Pcre() {
    pcre2_match_data_free(data_);
    pcre2_code_free(code_);
  }
  bool full_match(const std::string& s) const {
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_NO_UTF_CHECK, data_, nullptr);
    return rc >= 0;
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* data_ = nullptr;
};

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = uint8_t(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    i += n;
  }
  return true;
}

TEST(GrammarRegex, SameLanguageAsPcre2) {
  const std::vector<std::string> patterns = {
      "abc", "a|b|cd", "a*b+c?", "(ab)*c", "[a-c]{2,4}", "[^a-c]x", "\\d{3}-\\d{2}", "\\w+@\\w+\\.com",
      "(?:x|yz){1,3}", ".{2}", "a.c", "[\\s]+", "\\S\\W\\D", "(a|ab)(c|bcd)", "colou?r", "[-a]+", "[a-]+",
      "x{0}y", "(a*)*b", "[α-ω]+", "日本?", "\\x41\\x{3b1}", "[\\]\\\\]+", "^ab$", "a{2,}", "(?<n>ab)+", "a+?b",
      "[.]", "\\.\\t", "[^\\d\\s]{1,3}", "(0|[1-9][0-9]*)(\\.[0-9]+)?", "[\\x00-\\x7f]*é", "[^x]*", "((a|b)c?){2}",
      "\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$", "[a-zA-Z_][a-zA-Z0-9_]*", "\\$\\d+(\\.\\d\\d)?", "a{1,2}?b{,3}"};
  const std::vector<std::string> extra = {"a", "b", "c", "x", "y", "z", "0", "1", "5", "9", "-", "@", ".", " ", "\n", "\t",
                                          "_", "α", "ω", "β", "日", "本", "A", "é", "\\", "]", "(", ")", "$", "{", "}"};
  std::mt19937 rng(11);
  size_t compared = 0, positive = 0;
  for (const std::string& p : patterns) {
    SCOPED_TRACE(p);
    // A pattern that PCRE2 reads as a literal "{,3}" (older versions) must not be compared.
    if (p.find("{,") != std::string::npos) continue;
    Pcre pcre(p);
    auto g = testing::compile_spec(GrammarKind::Regex, p);
    // The pattern's own characters plus common ones.
    std::vector<std::string> alphabet = extra;
    for (size_t i = 0; i < p.size();) {
      size_t n = 1;
      while (i + n < p.size() && (uint8_t(p[i + n]) & 0xC0) == 0x80) ++n;
      alphabet.push_back(p.substr(i, n));
      i += n;
    }
    std::vector<std::string> inputs;
    for (int k = 0; k < 600; ++k) {
      std::string s;
      const int len = int(rng() % 9);
      for (int j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
      inputs.push_back(s);
    }
    for (int k = 0; k < 100; ++k)
      if (auto s = testing::sample(g, rng, 60, 0.3)) inputs.push_back(*s);
    for (const std::string& s : inputs) {
      if (!valid_utf8(s)) continue;
      const bool want = pcre.full_match(s);
      EXPECT_EQ(grammar_matches(g, s), want) << "input '" << s << "'";
      ++compared;
      positive += want;
    }
  }
  EXPECT_GT(positive, compared / 10);  // the comparison covers both answers
}

TEST(GrammarRegex, UnsupportedConstructsAreNamed) {
  auto err = [](const std::string& p) {
    try {
      parse_regex(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("(?=a)b").find("lookahead"), std::string::npos);
  EXPECT_NE(err("(?<=a)b").find("lookbehind"), std::string::npos);
  EXPECT_NE(err("(a)\\1").find("backreferences"), std::string::npos);
  EXPECT_NE(err("\\bfoo").find("word boundaries"), std::string::npos);
  EXPECT_NE(err("a++").find("possessive"), std::string::npos);
  EXPECT_NE(err("(?i)a").find("not supported"), std::string::npos);
  EXPECT_NE(err("\\p{L}").find("Unicode properties"), std::string::npos);
  EXPECT_NE(err("[[:alpha:]]").find("POSIX"), std::string::npos);
  EXPECT_NE(err("a{3,2}").find("n < m"), std::string::npos);
  EXPECT_NE(err("(a").find("unclosed"), std::string::npos);
  EXPECT_NE(err("a)").find("unmatched"), std::string::npos);
  EXPECT_NE(err("*a").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(err("a^b").find("'^'"), std::string::npos);
  EXPECT_NE(err("a$b").find("'$'"), std::string::npos);
  EXPECT_NE(err("\\q").find("unsupported escape"), std::string::npos);
}

}  // namespace
}  // namespace ds::grammar
