#include "tokenizer/utf8.h"

namespace ds::tok::utf8 {
namespace {
// For a lead byte: number of continuation bytes, and the allowed range of the first one
// (the ranges that exclude overlong forms, surrogates and code points above U+10FFFF).
struct Lead {
  uint8_t n, lo, hi;
};
Lead lead_info(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {0, 0, 0};  // 0x80..0xC1, 0xF5..0xFF never start a sequence
}
constexpr const char kReplacement[] = "\xEF\xBF\xBD";

// How many bytes of s form a valid prefix of one sequence (>= 1 for a valid lead byte), and
// whether the sequence is complete.
size_t scan(std::string_view s, bool& complete) {
  uint8_t b = static_cast<uint8_t>(s[0]);
  complete = false;
  if (b < 0x80) {
    complete = true;
    return 1;
  }
  Lead l = lead_info(b);
  if (l.n == 0) return 0;
  size_t i = 1;
  for (; i <= l.n && i < s.size(); ++i) {
    uint8_t c = static_cast<uint8_t>(s[i]);
    uint8_t lo = i == 1 ? l.lo : 0x80, hi = i == 1 ? l.hi : 0xBF;
    if (c < lo || c > hi) return i;
  }
  complete = i == size_t(l.n) + 1;
  return i;
}
}  // namespace

size_t valid_seq_len(std::string_view s) {
  if (s.empty()) return 0;
  bool complete;
  size_t n = scan(s, complete);
  return complete ? n : 0;
}

size_t append_lossy(std::string& out, std::string_view bytes, bool final_chunk) {
  size_t i = 0, run = 0;  // [run, i): valid bytes not yet copied
  while (i < bytes.size()) {
    uint8_t b = static_cast<uint8_t>(bytes[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    bool complete;
    size_t n = scan(bytes.substr(i), complete);
    if (complete) {
      i += n;
      continue;
    }
    out.append(bytes.data() + run, i - run);
    if (i + n == bytes.size() && n > 0 && !final_chunk) return i;  // may still complete later
    out.append(kReplacement);
    i += n == 0 ? 1 : n;
    run = i;
  }
  out.append(bytes.data() + run, i - run);
  return i;
}

bool is_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_seq_len(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t decode_at(std::string_view s, size_t pos, char32_t& cp) {
  size_t n = valid_seq_len(s.substr(pos));
  if (n == 0) return 0;
  auto u = [&](size_t k) { return static_cast<uint8_t>(s[pos + k]); };
  switch (n) {
    case 1: cp = u(0); break;
    case 2: cp = (char32_t(u(0) & 0x1F) << 6) | (u(1) & 0x3F); break;
    case 3: cp = (char32_t(u(0) & 0x0F) << 12) | (char32_t(u(1) & 0x3F) << 6) | (u(2) & 0x3F); break;
    default:
      cp = (char32_t(u(0) & 0x07) << 18) | (char32_t(u(1) & 0x3F) << 12) | (char32_t(u(2) & 0x3F) << 6) |
           (u(3) & 0x3F);
  }
  return n;
}

size_t prev_start(std::string_view s, size_t end) {
  for (size_t back = 1; back <= 4 && back <= end; ++back) {
    if (valid_seq_len(s.substr(end - back, back)) == back) return end - back;
  }
  return end - 1;
}

void append_cp(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace ds::tok::utf8
