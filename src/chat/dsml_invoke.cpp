#include "chat/dsml_invoke.h"

#include "chat/text_scan.h"

namespace ds::chat::dsml {
namespace {

constexpr std::string_view kDsml = "｜DSML｜";
constexpr size_t kMaxTagBytes = 1024;  // a longer open tag is not a tag

// Matches `prefix` at s[pos]; NeedMore if s ends inside it.
Match literal(std::string_view s, size_t& pos, std::string_view lit) {
  size_t n = std::min(lit.size(), s.size() - pos);
  if (s.substr(pos, n) != lit.substr(0, n)) return Match::NoMatch;
  if (n < lit.size()) return Match::NeedMore;
  pos += lit.size();
  return Match::Complete;
}

// `<(｜DSML｜)?WORD` at s[pos]: the optional marker is taken when it is there.
Match tag_start(std::string_view s, size_t& pos, std::string_view word, bool closing) {
  Match m = literal(s, pos, closing ? "</" : "<");
  if (m != Match::Complete) return m;
  size_t save = pos;
  Match d = literal(s, pos, kDsml);
  if (d == Match::NeedMore) return Match::NeedMore;
  if (d == Match::NoMatch) pos = save;
  return literal(s, pos, word);
}

// A parameter element at s[pos]; on success fills name/string-flag/value and advances pos.
bool parse_parameter(std::string_view s, size_t& pos, std::string& name, std::string& is_str,
                     std::string_view& value) {
  size_t p = pos;
  if (tag_start(s, p, "parameter", false) != Match::Complete) return false;
  size_t q = skip_ascii_space(s, p);
  if (q == p) return false;
  p = q;
  if (literal(s, p, "name=\"") != Match::Complete) return false;
  size_t close = s.find('"', p);
  if (close == std::string_view::npos || close == p) return false;
  name = std::string(s.substr(p, close - p));
  p = close + 1;
  q = skip_ascii_space(s, p);
  if (q == p) return false;
  p = q;
  if (literal(s, p, "string=\"") != Match::Complete) return false;
  close = s.find('"', p);
  if (close == std::string_view::npos || close == p) return false;
  is_str = std::string(s.substr(p, close - p));
  p = skip_ascii_space(s, close + 1);
  if (p >= s.size() || s[p] != '>') return false;
  ++p;
  // Value runs to the first closing parameter tag, with or without the DSML marker.
  size_t end1 = s.find(std::string("</") + std::string(kDsml) + "parameter>", p);
  size_t end2 = s.find("</parameter>", p);
  size_t end = std::min(end1, end2);
  if (end == std::string_view::npos) return false;
  value = s.substr(p, end - p);
  pos = end + (end == end1 ? std::string("</").size() + kDsml.size() + 10 : 12);
  return true;
}

}  // namespace

Match match_invoke_open(std::string_view s, size_t& length, std::string& name) {
  // Limits are positions, not buffer sizes, so chunking never changes the outcome.
  size_t p = 0;
  Match m = tag_start(s, p, "invoke", false);
  if (m != Match::Complete) return m;
  size_t q = skip_ascii_space(s, p);
  if (q > kMaxTagBytes) return Match::NoMatch;
  if (q == s.size()) return Match::NeedMore;
  if (q == p) return Match::NoMatch;
  p = q;
  m = literal(s, p, "name=\"");
  if (m != Match::Complete) return m;
  size_t close = s.find('"', p);
  if (close == std::string_view::npos) return s.size() > kMaxTagBytes ? Match::NoMatch : Match::NeedMore;
  if (close == p || close > kMaxTagBytes) return Match::NoMatch;
  std::string n(s.substr(p, close - p));
  p = skip_ascii_space(s, close + 1);
  if (p > kMaxTagBytes) return Match::NoMatch;
  if (p == s.size()) return Match::NeedMore;
  if (s[p] != '>') return Match::NoMatch;
  length = p + 1;
  name = std::move(n);
  return Match::Complete;
}

bool parse_invoke_body(std::string_view body, Json& arguments) {
  std::string_view stripped = strip_ascii(body);
  if (stripped.size() >= 2 && stripped.front() == '{' && stripped.back() == '}') {
    Json j;
    if (try_parse_json(std::string(stripped), j) && j.is_object()) {
      arguments = std::move(j);
      return true;
    }
  }
  Json args = Json::object();
  size_t pos = skip_ascii_space(body);
  while (pos < body.size()) {
    std::string name, is_str;
    std::string_view value;
    if (!parse_parameter(body, pos, name, is_str, value)) return false;
    std::string v(strip_ascii(value));
    if (is_str == "true") {
      args[name] = v;
    } else {
      Json parsed;
      args[name] = try_parse_json(v, parsed) ? parsed : Json(v);
    }
    pos = skip_ascii_space(body, pos);
  }
  arguments = std::move(args);
  return true;
}

}  // namespace ds::chat::dsml
