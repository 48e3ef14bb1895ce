#include "grammar/json_rules.h"

#include <cctype>
#include <string>

#include "grammar/regex.h"
#include "util/error.h"

namespace ds::grammar {

namespace {

ExprPtr digits_range(char lo, char hi) { return byte_range(uint8_t(lo), uint8_t(hi)); }
ExprPtr any_digits(int n) { return repeat(digits_range('0', '9'), n, n); }

// Decimal strings (no sign, no leading zeros) of values in [lo, hi], both with the same number of
// digits: the usual digit-by-digit split.
void same_length_range(const std::string& lo, const std::string& hi, size_t pos, std::vector<ExprPtr>& prefix,
                       std::vector<ExprPtr>& out) {
  const size_t n = lo.size();
  if (pos == n) {
    out.push_back(seq(prefix));
    return;
  }
  if (lo[pos] == hi[pos]) {
    prefix.push_back(digits_range(lo[pos], lo[pos]));
    same_length_range(lo, hi, pos + 1, prefix, out);
    prefix.pop_back();
    return;
  }
  const bool lo_min = lo.find_first_not_of('0', pos + 1) == std::string::npos;
  const bool hi_max = hi.find_first_not_of('9', pos + 1) == std::string::npos;
  char mid_lo = lo[pos], mid_hi = hi[pos];
  if (!lo_min) {
    prefix.push_back(digits_range(lo[pos], lo[pos]));
    same_length_range(lo, lo.substr(0, pos + 1) + std::string(n - pos - 1, '9'), pos + 1, prefix, out);
    prefix.pop_back();
    ++mid_lo;
  }
  if (!hi_max) --mid_hi;
  if (mid_lo <= mid_hi) {
    auto items = prefix;
    items.push_back(digits_range(mid_lo, mid_hi));
    items.push_back(any_digits(int(n - pos - 1)));
    out.push_back(seq(std::move(items)));
  }
  if (!hi_max) {
    prefix.push_back(digits_range(hi[pos], hi[pos]));
    same_length_range(hi.substr(0, pos + 1) + std::string(n - pos - 1, '0'), hi, pos + 1, prefix, out);
    prefix.pop_back();
  }
}

// Non-negative integers in [lo, hi]; hi absent: unbounded.
ExprPtr nonneg_range(uint64_t lo, std::optional<uint64_t> hi) {
  std::vector<ExprPtr> out;
  const std::string los = std::to_string(lo);
  const size_t top_len = hi ? std::to_string(*hi).size() : los.size();
  for (size_t len = los.size(); len <= top_len; ++len) {
    std::string a = los;
    if (len != los.size()) a.assign(len, '0'), a[0] = '1';
    const std::string b = hi && len == top_len ? std::to_string(*hi) : std::string(len, '9');
    std::vector<ExprPtr> prefix;
    same_length_range(a, b, 0, prefix, out);
  }
  if (!hi) out.push_back(seq({digits_range('1', '9'), repeat(digits_range('0', '9'), int(los.size()), -1)}));
  return alt(std::move(out));
}

}  // namespace

int JsonRules::rule(const std::string& name, ExprPtr body) { return g_.add_rule(name, std::move(body)); }

void JsonRules::forget_rules_from(int count) {
  for (int* id : {&ws_, &string_, &number_, &integer_, &value_, &object_, &array_})
    if (*id >= count) *id = -1;
}

ExprPtr JsonRules::ws() {
  if (opt_.fixed_separators) return empty();
  ByteSet s;
  for (char c : {' ', '\t', '\n', '\r'}) s.set(uint8_t(c));
  // Unlimited: inlined (one automaton state per gap), so the token sets of the node before it
  // see what follows the whitespace (" true" is decided there, not left to the per-step check of
  // token_masks.h). Limited: one shared rule, as inlining {0,n} would cost n states per gap.
  if (opt_.max_whitespace < 0) return star(byte_set(s));
  if (ws_ < 0) ws_ = rule("ws", repeat(byte_set(s), 0, opt_.max_whitespace));
  return ref(ws_);
}

ExprPtr JsonRules::string_char() {
  ByteSet esc;
  for (char c : std::string("\"\\/bfnrt")) esc.set(uint8_t(c));
  ByteSet hex;
  for (int c = 0; c < 256; ++c) hex[c] = std::isxdigit(c) != 0;
  // With escape_lt a '<' is written only as the \u escape (which the alternative below allows).
  CodepointRanges plain_out = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
  if (opt_.escape_lt) plain_out.push_back({'<', '<'});
  return alt({utf8_class(complement(normalize(plain_out))),
              seq({literal("\\"), alt({byte_set(esc), seq({literal("u"), repeat(byte_set(hex), 4, 4)})})})});
}

ExprPtr JsonRules::string() {
  if (string_ < 0) string_ = rule("json_string", quoted(star(string_char())));
  return ref(string_);
}

ExprPtr JsonRules::integer() {
  if (integer_ < 0)
    integer_ = rule("json_integer", seq({optional(literal("-")), alt({literal("0"), seq({digits_range('1', '9'), star(digits_range('0', '9'))})})}));
  return ref(integer_);
}

ExprPtr JsonRules::number() {
  if (number_ < 0) {
    ExprPtr digits = plus(digits_range('0', '9'));
    ExprPtr frac = optional(seq({literal("."), digits}));
    ByteSet e, sign;
    e.set('e'), e.set('E'), sign.set('+'), sign.set('-');
    ExprPtr exp = optional(seq({byte_set(e), optional(byte_set(sign)), digits}));
    number_ = rule("json_number", seq({integer(), frac, exp}));
  }
  return ref(number_);
}

ExprPtr JsonRules::value() {
  if (value_ < 0) {
    value_ = rule("json_value", nothing());  // body below: it refers to itself through objects and arrays
    ExprPtr body = alt({string(), number(), boolean(), null(), any_object(), any_array()});
    g_.rules[size_t(value_)].body = body;
  }
  return ref(value_);
}

ExprPtr JsonRules::any_object() {
  if (object_ < 0) {
    object_ = rule("json_object", nothing());
    ExprPtr member = seq({string(), colon(), value()});
    ExprPtr body = seq({literal("{"), ws(), optional(seq({member, star(seq({comma(), member}))})), ws(), literal("}")});
    g_.rules[size_t(object_)].body = body;
  }
  return ref(object_);
}

ExprPtr JsonRules::any_array() {
  if (array_ < 0) {
    array_ = rule("json_array", nothing());
    ExprPtr body = seq({literal("["), ws(), optional(seq({value(), star(seq({comma(), value()}))})), ws(), literal("]")});
    g_.rules[size_t(array_)].body = body;
  }
  return ref(array_);
}

ExprPtr JsonRules::json_chars(const CodepointRanges& set, bool escape_lt) {
  // Plain characters as themselves; '"', '\\' and controls only as escapes.
  CodepointRanges plain;
  std::vector<ExprPtr> escaped;
  static const char* kHex = "0123456789abcdef";
  for (auto [lo, hi] : normalize(set)) {
    for (uint32_t c = lo; c <= hi && c < 0x20; ++c) {
      std::string e;
      switch (c) {
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default: e = std::string("\\u00") + kHex[c >> 4] + kHex[c & 15];
      }
      escaped.push_back(literal(e));
    }
    if (lo <= '"' && '"' <= hi) escaped.push_back(literal("\\\""));
    if (lo <= '\\' && '\\' <= hi) escaped.push_back(literal("\\\\"));
    if (escape_lt && lo <= '<' && '<' <= hi) escaped.push_back(literal("\\u003c"));
    plain.emplace_back(std::max<uint32_t>(lo, 0x20), hi);
  }
  CodepointRanges cut;
  for (auto [lo, hi] : plain) {
    if (lo > hi) continue;
    for (uint32_t special : {uint32_t('"'), uint32_t('<'), uint32_t('\\')}) {
      if (special == '<' && !escape_lt) continue;
      if (lo <= special && special <= hi) {
        if (lo < special) cut.emplace_back(lo, special - 1);
        lo = special + 1;
      }
    }
    if (lo <= hi) cut.emplace_back(lo, hi);
  }
  std::vector<ExprPtr> items;
  if (!cut.empty()) items.push_back(utf8_class(cut));
  items.insert(items.end(), escaped.begin(), escaped.end());
  return items.empty() ? nothing() : alt(std::move(items));
}

ExprPtr JsonRules::integer_range(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  if (lo && hi && *lo > *hi) fail("integer range is empty (minimum {} > maximum {})", *lo, *hi);
  std::vector<ExprPtr> parts;
  // Non-negative part: [max(lo, 0), hi].
  if (!hi || *hi >= 0) parts.push_back(nonneg_range(lo && *lo > 0 ? uint64_t(*lo) : 0, hi ? std::optional<uint64_t>(uint64_t(*hi)) : std::nullopt));
  // Negative part: -[max(1, -hi), -lo].
  if (!lo || *lo < 0) {
    const uint64_t mag_lo = hi && *hi < 0 ? uint64_t(-(*hi + 1)) + 1 : 1;
    std::optional<uint64_t> mag_hi;
    if (lo) mag_hi = uint64_t(-(*lo + 1)) + 1;
    parts.push_back(seq({literal("-"), nonneg_range(mag_lo, mag_hi)}));
  }
  return alt(std::move(parts));
}

ExprPtr JsonRules::string_format(const std::string& format) {
  static const std::string kDate = R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))";
  static const std::string kTime = R"(([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))";
  static const std::string kOctet = R"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))";
  std::string re;
  if (format == "date") {
    re = kDate;
  } else if (format == "time") {
    re = kTime;
  } else if (format == "date-time") {
    re = kDate + "T" + kTime;
  } else if (format == "uuid") {
    re = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
  } else if (format == "ipv4") {
    re = kOctet + R"((\.)" + kOctet + "){3}";
  } else if (format == "email") {
    re = R"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+)";
  } else {
    fail("unsupported JSON Schema string format '{}' (supported: date, time, date-time, uuid, ipv4, email)", format);
  }
  RegexOptions o;
  o.char_set = [](const CodepointRanges& set) { return json_chars(set); };  // formats hold no '<'
  return parse_regex(re, o);
}

}  // namespace ds::grammar
