#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace ds::tok {
namespace {
// One match data block and JIT stack per thread and pattern size; the Regex itself stays const
// and shareable between threads.
struct ThreadScratch {
  pcre2_match_data* md = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* ctx = nullptr;
  ThreadScratch() {
    md = pcre2_match_data_create(1, nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    if (ctx && stack) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~ThreadScratch() {
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(md);
  }
};
ThreadScratch& scratch() {
  thread_local ThreadScratch s;
  return s;
}
}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string what;
  ~Impl() { pcre2_code_free(code); }

  // Returns the match [start, end) at or after `from`, or false.
  bool search(std::string_view s, size_t from, uint32_t options, size_t& ms, size_t& me) const {
    ThreadScratch& t = scratch();
    auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    int rc = jit ? pcre2_jit_match(code, subject, s.size(), from, options, t.md, t.ctx)
                 : pcre2_match(code, subject, s.size(), from, options, t.md, t.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof buf);
      fail("tokenizer: regex {} failed on a {}-byte text: {}", what, s.size(), reinterpret_cast<char*>(buf));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(t.md);
    ms = ov[0];
    me = ov[1];
    return true;
  }
};

Regex::Regex(std::string_view pattern, bool literal, std::string_view what) : impl_(std::make_unique<Impl>()) {
  impl_->what = std::string(what);
  std::string pat = literal ? std::string(pattern) : onig_compat(pattern);
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  int err = 0;
  PCRE2_SIZE off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), opts, &err, &off, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    fail("tokenizer: cannot compile {} /{}/ at offset {}: {}", what, pattern, off, reinterpret_cast<char*>(buf));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  size_t from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (from <= s.size()) {
    size_t ms, me;
    if (!impl_->search(s, from, 0, ms, me)) break;
    if (ms == me && have_last && ms == last_end) {
      // Empty match where the previous one ended: step over one character and search again.
      if (ms >= s.size()) break;
      size_t n = utf8::valid_seq_len(s.substr(ms));
      from = ms + (n ? n : 1);
      continue;
    }
    out.emplace_back(ms, me);
    have_last = true;
    last_end = me;
    from = me;
  }
}

bool Regex::matches_at(std::string_view s, size_t pos) const {
  size_t ms, me;
  return impl_->search(s, pos, PCRE2_ANCHORED, ms, me);
}

// Unicode White_Space, which is what Oniguruma's \s means for UTF-8 text (PCRE2's UCP \s also
// takes U+180E, which stopped being a space in Unicode 6.3).
constexpr std::string_view kWhiteSpace =
    "\\t\\n\\x{0b}\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

std::string onig_compat(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  int class_depth = 0;  // 1 inside [...]
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[i + 1];
      ++i;
      if (e == 's') {
        out += class_depth ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (e == 'S' && !class_depth) {
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += '\\';
        out += e;
      }
      continue;
    }
    if (c == '[' && !class_depth) {
      class_depth = 1;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == '[' && class_depth && i + 1 < p.size() && p[i + 1] == ':') {
      size_t close = p.find(":]", i + 2);  // a POSIX class such as [:alpha:] inside [...]
      if (close != std::string_view::npos) {
        out.append(p.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
    }
    if (c == ']' && class_depth) class_depth = 0;
    out += c;
  }
  return out;
}

}  // namespace ds::tok
