#include "bench/math_answer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <vector>

#include "bench/math_expr.h"

namespace ds::bench {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// Built by appending rather than std::string::replace, which trips GCC 12's -Wrestrict false alarm.
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t start = 0;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, start)) {
    out.append(s, start, p - start).append(to);
    start = p + from.size();
  }
  if (start == 0) return;  // nothing matched
  s = out.append(s, start);
}

// Index of the '}' closing the '{' at `open`, or npos.
size_t matching_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string::npos;
}

// Replaces `\name` (not a prefix of a longer command such as \leftarrow) with `to`.
void replace_command(std::string& s, std::string_view name, std::string_view to) {
  std::string out;
  size_t start = 0;
  for (size_t p = s.find('\\'); p != std::string::npos; p = s.find('\\', p + 1)) {
    size_t end = p + 1 + name.size();
    if (s.compare(p + 1, name.size(), name) != 0 || (end < s.size() && is_alpha(s[end]))) continue;
    out.append(s, start, p - start).append(to);
    start = end;
    p = end - 1;
  }
  if (start == 0) return;  // nothing matched
  s = out.append(s, start);
}

// "$x$", "$$x$$", "\(x\)", "\[x\]" -> "x".
std::string strip_math_delimiters(std::string s) {
  for (bool changed = true; changed;) {
    changed = false;
    s = trim(s);
    for (auto [open, close] : std::vector<std::pair<std::string_view, std::string_view>>{
             {"$$", "$$"}, {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}}) {
      if (s.size() >= open.size() + close.size() && s.starts_with(open) && s.ends_with(close)) {
        s = s.substr(open.size(), s.size() - open.size() - close.size());
        changed = true;
        break;
      }
    }
  }
  return s;
}

// "\boxed{x}" or "{x}" spanning the whole string -> "x".
std::string unwrap_whole(std::string s) {
  for (bool changed = true; changed;) {
    changed = false;
    s = trim(s);
    for (std::string_view prefix : {"\\boxed{", "\\fbox{", "{"}) {
      if (!s.starts_with(prefix)) continue;
      size_t close = matching_brace(s, prefix.size() - 1);
      if (close == s.size() - 1) {
        s = s.substr(prefix.size(), close - prefix.size());
        changed = true;
        break;
      }
    }
  }
  return s;
}

// \text{...} and friends: a trailing group after a number is a unit ("5\text{ cm}^2" -> "5");
// anywhere else the group is replaced by its content ("\text{5}" -> "5").
void drop_text_wrappers(std::string& s) {
  for (std::string_view name : {"text", "textbf", "textrm", "textit", "mathrm", "mathbf", "mbox"}) {
    std::string open(1, '\\');
    open.append(name).push_back('{');
    for (size_t p = s.find(open); p != std::string::npos; p = s.find(open, p)) {
      size_t close = matching_brace(s, p + open.size() - 1);
      if (close == std::string::npos) return;
      size_t end = close + 1;  // a unit's exponent ("^2", "^{2}") goes with it
      if (end < s.size() && s[end] == '^') {
        size_t e = end + 1;
        if (e < s.size() && s[e] == '{') e = matching_brace(s, e);
        if (e != std::string::npos && e < s.size()) end = e + 1;
      }
      std::string before = s.substr(0, p);
      bool unit = trim(s.substr(end)).empty() && std::any_of(before.begin(), before.end(), is_digit);
      std::string inner = unit ? "" : s.substr(p + open.size(), close - p - open.size());
      s = before + inner + s.substr(unit ? end : close + 1);
      p += inner.size();
    }
  }
}

// "5 cm", "30 degrees", "12 square units" -> the number: words after a space at the end of an
// answer that has a digit before them. "2 \pi" keeps its \pi (a command, not a word).
void drop_unit_words(std::string& s) {
  s = trim(s);
  size_t end = s.size();
  if (end >= 2 && s[end - 2] == '^' && is_digit(s[end - 1])) end -= 2;  // "units^2"
  size_t b = end;
  while (b > 0 && (is_alpha(s[b - 1]) || is_space(s[b - 1]))) --b;
  if (b == end || b == 0 || !is_space(s[b])) return;  // no words, or glued on ("5x", "\pi")
  std::string before = trim(s.substr(0, b));
  if (std::none_of(before.begin(), before.end(), is_digit)) return;
  char last = before.back();
  if (is_digit(last) || last == ')' || last == '}' || last == '.') s = before;
}

// "x = 5", "\theta = 30", "a_1 = 2" -> the right-hand side.
void drop_assignment(std::string& s) {
  size_t eq = s.find('=');
  if (eq == std::string::npos || s.find('=', eq + 1) != std::string::npos) return;
  std::string lhs = trim(s.substr(0, eq));
  size_t i = lhs.starts_with("\\") ? 1 : 0;
  size_t letters = i;
  while (letters < lhs.size() && is_alpha(lhs[letters])) ++letters;
  if (letters == i) return;
  std::string rest = lhs.substr(letters);  // an optional subscript: _1, _{12}, _n
  bool subscript_ok = rest.empty() || (rest.size() >= 2 && rest[0] == '_' &&
                                       std::all_of(rest.begin() + 1, rest.end(), [](char c) {
                                         return std::isalnum(static_cast<unsigned char>(c)) || c == '{' || c == '}';
                                       }));
  if (!subscript_ok) return;
  std::string rhs = trim(s.substr(eq + 1));
  if (!rhs.empty()) s = rhs;
}

// Runs of digits and commas such as "1,234,567" lose their commas when every group after the
// first has three digits; "1,2" (a pair) is left alone.
void drop_thousands_separators(std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (!is_digit(s[i]) || (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))) continue;
    size_t j = i;
    std::vector<size_t> groups(1, 0);
    while (j < s.size() && (is_digit(s[j]) || (s[j] == ',' && j + 1 < s.size() && is_digit(s[j + 1])))) {
      if (s[j] == ',') groups.push_back(0);
      else ++groups.back();
      ++j;
    }
    bool thousands = groups.size() > 1 && groups[0] <= 3 &&
                     std::all_of(groups.begin() + 1, groups.end(), [](size_t g) { return g == 3; });
    if (thousands) {
      std::string run = s.substr(i, j - i);
      run.erase(std::remove(run.begin(), run.end(), ','), run.end());
      s.replace(i, j - i, run);
      j = i + run.size();
    }
    i = j;
  }
}

// "007" -> "7" and "00.5" -> "0.5"; digits after a decimal point are left alone.
void drop_leading_zeros(std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (!is_digit(s[i]) || (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))) continue;
    size_t j = i;
    while (j + 1 < s.size() && s[j] == '0' && is_digit(s[j + 1])) ++j;
    s.erase(i, j - i);
    while (i + 1 < s.size() && is_digit(s[i + 1])) ++i;
  }
}

}  // namespace

std::optional<std::string> last_boxed(std::string_view text) {
  size_t boxed = text.rfind("\\boxed"), fbox = text.rfind("\\fbox");
  size_t at = boxed == std::string_view::npos ? fbox
              : fbox == std::string_view::npos ? boxed
                                               : std::max(boxed, fbox);
  if (at == std::string_view::npos) return std::nullopt;
  size_t p = at + (at == boxed ? 6 : 5);
  if (p < text.size() && text[p] == '{') {
    size_t close = matching_brace(text, p);
    if (close == std::string_view::npos) return std::nullopt;
    return std::string(text.substr(p + 1, close - p - 1));
  }
  // "\boxed 42": the old spelling without braces takes the next word.
  if (p >= text.size() || text[p] != ' ') return std::nullopt;
  while (p < text.size() && text[p] == ' ') ++p;
  size_t e = p;
  while (e < text.size() && !is_space(text[e]) && text[e] != '$') ++e;
  if (e == p) return std::nullopt;
  return std::string(text.substr(p, e - p));
}

std::string normalize_math_answer(std::string_view answer) {
  std::string s = unwrap_whole(strip_math_delimiters(std::string(answer)));
  replace_all(s, "\xE2\x88\x92", "-");  // U+2212 minus sign
  replace_all(s, "\xCF\x80", "\\pi ");  // U+03C0 pi
  for (std::string_view gap : {"\\!", "\\,", "\\;", "\\:", "\\ ", "~"}) replace_all(s, gap, " ");
  for (std::string_view name : {"left", "right", "displaystyle", "big", "Big", "bigl", "bigr", "Bigl", "Bigr"})
    replace_command(s, name, "");
  replace_command(s, "qquad", " ");
  replace_command(s, "quad", " ");
  replace_command(s, "dfrac", "\\frac");
  replace_command(s, "tfrac", "\\frac");
  // Degrees: 30^\circ, 30^{\circ}, 30°, 30\degree.
  for (std::string_view deg : {"^{\\circ}", "^\\circ", "\\circ", "\xC2\xB0"}) replace_all(s, deg, "");
  replace_command(s, "degree", "");
  replace_all(s, "\\%", "%");
  replace_all(s, "\\$", "");
  drop_text_wrappers(s);
  s = unwrap_whole(s);
  drop_assignment(s);
  // Trailing full stops, line breaks, percent signs and units, in any order ("50 \%.", "5 cm.").
  for (size_t before = std::string::npos; before != s.size();) {
    before = s.size();
    s = trim(s);
    while (!s.empty() && (s.back() == '.' || s.back() == '%')) s.pop_back();
    while (s.ends_with("\\\\")) s.resize(s.size() - 2);
    drop_unit_words(s);
  }
  s.erase(std::remove_if(s.begin(), s.end(), is_space), s.end());
  replace_all(s, "{,}", ",");
  drop_thousands_separators(s);
  drop_leading_zeros(s);
  return unwrap_whole(s);
}

bool math_answers_equal(std::string_view expected, std::string_view predicted) {
  std::string want = normalize_math_answer(expected), got = normalize_math_answer(predicted);
  if (got.empty()) return false;
  if (want == got) return true;
  auto a = eval_math_expr(want), b = eval_math_expr(got);
  if (!a || !b) return false;
  return std::fabs(*a - *b) <= 1e-9 * std::max({1.0, std::fabs(*a), std::fabs(*b)});
}

}  // namespace ds::bench
