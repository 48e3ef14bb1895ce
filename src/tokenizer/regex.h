// A compiled PCRE2 pattern (UTF + UCP + JIT) with HF's find-all semantics. Subjects may hold
// invalid UTF-8: invalid bytes never match (PCRE2_MATCH_INVALID_UTF), so they end up in the gaps.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds::tok {

class Regex {
 public:
  // `literal`: the pattern is a plain string (HF's {"String": ...} pattern), not a regex.
  // Throws ds::Error naming `what` and PCRE2's message if it does not compile.
  Regex(std::string_view pattern, bool literal, std::string_view what);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // All non-overlapping matches in s, left to right, as [start, end) byte offsets. An empty match
  // right after the previous match is skipped (the search moves on by one character).
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  // Whether the pattern matches at exactly s[pos] (anchored there).
  bool matches_at(std::string_view s, size_t pos) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// HF compiles with Oniguruma, whose \s is Unicode White_Space; PCRE2's UCP \s differs (it also
// takes U+180E). Rewrites \s and \S outside character classes, and \s inside them, to the
// White_Space list (\S inside a class is left to PCRE2). Exposed for tests.
std::string onig_compat(std::string_view pattern);

}  // namespace ds::tok
