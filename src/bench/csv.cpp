#include "bench/csv.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ds::bench {

CsvTable parse_csv(const std::string& t) {
  CsvTable rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < t.size() && t[i + 1] == '"') field += '"', ++i;
        else quoted = false;
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < t.size() && t[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

CsvTable read_csv_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DS_CHECK(in.good(), "cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_csv(ss.str());
}

namespace {
bool parse_int(const std::string& s, long long& v) {
  if (s.empty()) return false;
  size_t b = s[0] == '-' || s[0] == '+' ? 1 : 0;
  if (b == s.size()) return false;
  auto r = std::from_chars(s.data() + (s[0] == '+' ? 1 : 0), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}
bool parse_float(const std::string& s, double& v) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data() + (s[0] == '+' ? 1 : 0), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}
std::string py_repr(double x) {
  if (std::isnan(x)) return "nan";
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".ein") == std::string::npos) s += ".0";
  return s;
}
}  // namespace

void pandas_render(CsvTable& rows) {
  size_t cols = 0;
  for (const auto& r : rows) cols = std::max(cols, r.size());
  for (auto& r : rows) r.resize(cols);
  for (size_t c = 0; c < cols; ++c) {
    bool all_int = true, all_num = true, any_empty = false;
    for (const auto& r : rows) {
      long long iv;
      double fv;
      if (r[c].empty()) {
        any_empty = true;
        all_int = false;
        continue;
      }
      if (!parse_int(r[c], iv)) all_int = false;
      if (!parse_float(r[c], fv)) all_num = false;
    }
    for (auto& r : rows) {
      long long iv;
      double fv;
      if (all_int) {
        parse_int(r[c], iv);
        r[c] = std::to_string(iv);
      } else if (all_num) {
        r[c] = r[c].empty() ? "nan" : (parse_float(r[c], fv), py_repr(fv));
      } else if (r[c].empty()) {
        r[c] = "nan";
      }
    }
    (void)any_empty;
  }
}

}  // namespace ds::bench
