#include "grammar/expr.h"

#include <algorithm>
#include <array>

#include "util/error.h"

namespace ds::grammar {

namespace {
ExprPtr make(Expr e) { return std::make_shared<const Expr>(std::move(e)); }
}  // namespace

ExprPtr empty() { return make(Expr{}); }

ExprPtr nothing() {
  Expr e;
  e.kind = Expr::Kind::Alt;
  return make(std::move(e));
}

ExprPtr byte_set(const ByteSet& set) {
  if (set.none()) return nothing();
  Expr e;
  e.kind = Expr::Kind::Bytes;
  e.bytes = set;
  return make(std::move(e));
}

ExprPtr byte_range(uint8_t lo, uint8_t hi) {
  ByteSet s;
  for (int b = lo; b <= hi; ++b) s.set(b);
  return byte_set(s);
}

ExprPtr literal(std::string_view bytes) {
  std::vector<ExprPtr> items;
  items.reserve(bytes.size());
  for (unsigned char c : bytes) items.push_back(byte_range(c, c));
  return seq(std::move(items));
}

ExprPtr seq(std::vector<ExprPtr> items) {
  if (items.size() == 1) return items[0];
  Expr e;
  e.kind = Expr::Kind::Seq;
  for (auto& it : items) {
    if (it->kind == Expr::Kind::Seq) {
      e.items.insert(e.items.end(), it->items.begin(), it->items.end());
    } else {
      e.items.push_back(std::move(it));
    }
  }
  if (e.items.size() == 1) return e.items[0];
  return make(std::move(e));
}

ExprPtr alt(std::vector<ExprPtr> items) {
  if (items.size() == 1) return items[0];
  Expr e;
  e.kind = Expr::Kind::Alt;
  e.items = std::move(items);
  return make(std::move(e));
}

ExprPtr repeat(ExprPtr item, int min, int max) {
  DS_CHECK(min >= 0 && (max < 0 || max >= min), "bad repetition bounds {{{},{}}}", min, max);
  if (min == 1 && max == 1) return item;
  Expr e;
  e.kind = Expr::Kind::Repeat;
  e.items = {std::move(item)};
  e.min = min;
  e.max = max;
  return make(std::move(e));
}

ExprPtr ref(int rule) {
  Expr e;
  e.kind = Expr::Kind::Ref;
  e.rule = rule;
  return make(std::move(e));
}

CodepointRanges normalize(CodepointRanges r) {
  std::sort(r.begin(), r.end());
  CodepointRanges out;
  for (auto [lo, hi] : r) {
    hi = std::min<uint32_t>(hi, 0x10FFFF);
    if (lo > hi) continue;
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.emplace_back(lo, hi);
    }
  }
  return out;
}

CodepointRanges complement(const CodepointRanges& ranges) {
  CodepointRanges out;
  uint32_t next = 0;
  for (auto [lo, hi] : normalize(ranges)) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= 0x10FFFF) out.emplace_back(next, 0x10FFFF);
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
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

namespace {

// The byte sequences between lo and hi (same length n, each byte a "digit" with its own range:
// continuation bytes run 0x80-0xBF), as an alternation of byte-range sequences.
void digit_ranges(const std::string& lo, const std::string& hi, size_t pos, std::vector<ExprPtr>& prefix,
                  std::vector<ExprPtr>& out) {
  const size_t n = lo.size();
  auto lo_b = [&](size_t i) { return uint8_t(lo[i]); };
  auto hi_b = [&](size_t i) { return uint8_t(hi[i]); };
  auto all_min = [&](size_t from) {
    for (size_t i = from; i < n; ++i)
      if (lo_b(i) != 0x80) return false;
    return true;
  };
  auto all_max = [&](size_t from) {
    for (size_t i = from; i < n; ++i)
      if (hi_b(i) != 0xBF) return false;
    return true;
  };
  auto full_tail = [&](size_t from, std::vector<ExprPtr> items) {
    for (size_t i = from; i < n; ++i) items.push_back(byte_range(0x80, 0xBF));
    return seq(std::move(items));
  };
  if (pos + 1 == n) {
    auto items = prefix;
    items.push_back(byte_range(lo_b(pos), hi_b(pos)));
    out.push_back(seq(std::move(items)));
    return;
  }
  if (lo_b(pos) == hi_b(pos)) {
    prefix.push_back(byte_range(lo_b(pos), lo_b(pos)));
    digit_ranges(lo, hi, pos + 1, prefix, out);
    prefix.pop_back();
    return;
  }
  int mid_lo = lo_b(pos), mid_hi = hi_b(pos);
  if (!all_min(pos + 1)) {
    std::string max_tail = lo;
    for (size_t i = pos + 1; i < n; ++i) max_tail[i] = char(0xBF);
    prefix.push_back(byte_range(lo_b(pos), lo_b(pos)));
    digit_ranges(lo, max_tail, pos + 1, prefix, out);
    prefix.pop_back();
    ++mid_lo;
  }
  bool hi_partial = !all_max(pos + 1);
  if (hi_partial) --mid_hi;
  if (mid_lo <= mid_hi) {
    auto items = prefix;
    items.push_back(byte_range(uint8_t(mid_lo), uint8_t(mid_hi)));
    out.push_back(full_tail(pos + 1, std::move(items)));
  }
  if (hi_partial) {
    std::string min_tail = hi;
    for (size_t i = pos + 1; i < n; ++i) min_tail[i] = char(0x80);
    prefix.push_back(byte_range(hi_b(pos), hi_b(pos)));
    digit_ranges(min_tail, hi, pos + 1, prefix, out);
    prefix.pop_back();
  }
}

}  // namespace

ExprPtr utf8_class(const CodepointRanges& ranges) {
  // Split at the encoded-length boundaries and around the surrogates, then per same-length range.
  static constexpr std::array<std::pair<uint32_t, uint32_t>, 5> kBands = {
      {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, 0x10FFFF}}};
  std::vector<ExprPtr> out;
  ByteSet ascii;
  for (auto [lo, hi] : normalize(ranges)) {
    for (auto [blo, bhi] : kBands) {
      uint32_t a = std::max(lo, blo), b = std::min(hi, bhi);
      if (a > b) continue;
      if (b < 0x80) {
        for (uint32_t c = a; c <= b; ++c) ascii.set(c);
        continue;
      }
      std::string lo_s, hi_s;
      append_utf8(lo_s, a);
      append_utf8(hi_s, b);
      std::vector<ExprPtr> prefix;
      digit_ranges(lo_s, hi_s, 0, prefix, out);
    }
  }
  if (ascii.any()) out.insert(out.begin(), byte_set(ascii));
  if (out.empty()) return nothing();
  return alt(std::move(out));
}

int Grammar::find(const std::string& name) const {
  auto it = names.find(name);
  return it == names.end() ? -1 : it->second;
}

int Grammar::rule_id(const std::string& name) {
  int id = find(name);
  if (id >= 0) return id;
  rules.push_back(Rule{name, nullptr});
  names[name] = int(rules.size()) - 1;
  return int(rules.size()) - 1;
}

int Grammar::add_rule(const std::string& hint, ExprPtr body) {
  std::string name = hint;
  // Numbered from the count of rules so that many rules with one hint stay cheap.
  for (size_t k = rules.size(); find(name) >= 0; ++k) name = hint + "_" + std::to_string(k);
  rules.push_back(Rule{name, std::move(body)});
  names[name] = int(rules.size()) - 1;
  return int(rules.size()) - 1;
}

}  // namespace ds::grammar
