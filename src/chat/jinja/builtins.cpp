#include "chat/jinja/builtins.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <set>

namespace ds::chat::jinja {
namespace {

[[noreturn]] void bad(const std::string& what) { throw RenderError(what); }

bool py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto drop = [&](char c) { return chars.is_string() ? chars.s.find(c) != std::string::npos : py_space(c); };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && drop(s[b])) ++b;
  if (right)
    while (e > b && drop(s[e - 1])) --e;
  return s.substr(b, e - b);
}

List split(const std::string& s, const Value& sep, int64_t maxsplit) {
  List out;
  if (sep.is_undefined() || sep.is_none()) {  // runs of whitespace, no empty strings
    size_t k = 0;
    while (k < s.size()) {
      while (k < s.size() && py_space(s[k])) ++k;
      if (k >= s.size()) break;
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) {
        size_t e = s.size();
        while (e > k && py_space(s[e - 1])) --e;
        out.push_back(Value::string(s.substr(k, e - k)));
        return out;
      }
      size_t b = k;
      while (k < s.size() && !py_space(s[k])) ++k;
      out.push_back(Value::string(s.substr(b, k - b)));
    }
    return out;
  }
  if (!sep.is_string() || sep.s.empty()) bad("split: empty separator");
  size_t b = 0;
  for (size_t k; (k = s.find(sep.s, b)) != std::string::npos && (maxsplit < 0 || int64_t(out.size()) < maxsplit);) {
    out.push_back(Value::string(s.substr(b, k - b)));
    b = k + sep.s.size();
  }
  out.push_back(Value::string(s.substr(b)));
  return out;
}

std::string replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  size_t b = 0;
  int64_t done = 0;
  if (from.empty()) bad("replace with an empty pattern is not supported");
  for (size_t k; (count < 0 || done < count) && (k = s.find(from, b)) != std::string::npos; ++done) {
    out += s.substr(b, k - b) + to;
    b = k + from.size();
  }
  return out + s.substr(b);
}

std::string ascii_case(std::string s, bool upper) {
  for (auto& c : s) c = char(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (auto& c : out) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = char(alpha ? (prev_cased ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c))) : c);
    prev_cased = alpha;
  }
  return out;
}

bool starts_or_ends(const std::string& s, const Value& what, bool start) {
  auto one = [&](const std::string& p) {
    return p.size() <= s.size() && (start ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0);
  };
  if (what.is_string()) return one(what.s);
  if (what.is_list()) {
    for (const auto& p : *what.list)
      if (p.is_string() && one(p.s)) return true;
    return false;
  }
  bad("startswith/endswith first arg must be str or a tuple of str");
}

int64_t as_int(const Value& v, int64_t fallback) {
  if (v.is_undefined() || v.is_none()) return fallback;
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  bad(fmt::format("'{}' object cannot be interpreted as an integer", type_name(v)));
}

Value bound(std::function<Value(Args&)> f) { return Value::callable(std::move(f)); }

Value string_method(const std::string& s, const std::string& name) {
  if (name == "strip" || name == "lstrip" || name == "rstrip")
    return bound([s, name](Args& a) {
      return Value::string(strip(s, a.get(0, "chars"), name != "rstrip", name != "lstrip"));
    });
  if (name == "split") return bound([s](Args& a) { return Value::of_list(split(s, a.get(0, "sep"), as_int(a.get(1, "maxsplit"), -1))); });
  if (name == "splitlines")
    return bound([s](Args&) {
      List out;
      size_t b = 0;
      for (size_t k = 0; k < s.size(); ++k)
        if (s[k] == '\n' || s[k] == '\r') {
          out.push_back(Value::string(s.substr(b, k - b)));
          if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
          b = k + 1;
        }
      if (b < s.size()) out.push_back(Value::string(s.substr(b)));
      return Value::of_list(std::move(out));
    });
  if (name == "startswith" || name == "endswith")
    return bound([s, name](Args& a) { return Value::boolean(starts_or_ends(s, a.get(0, "prefix"), name == "startswith")); });
  if (name == "replace")
    return bound([s](Args& a) {
      Value from = a.get(0, "old"), to = a.get(1, "new");
      if (!from.is_string() || !to.is_string()) bad("replace() arguments must be str");
      return Value::string(replace(s, from.s, to.s, as_int(a.get(2, "count"), -1)));
    });
  if (name == "upper" || name == "lower") return bound([s, name](Args&) { return Value::string(ascii_case(s, name == "upper")); });
  if (name == "title") return bound([s](Args&) { return Value::string(title(s)); });
  if (name == "capitalize")
    return bound([s](Args&) {
      std::string out = ascii_case(s, false);
      if (!out.empty()) out[0] = char(std::toupper(static_cast<unsigned char>(out[0])));
      return Value::string(out);
    });
  if (name == "find" || name == "rfind" || name == "count" || name == "index")
    return bound([s, name](Args& a) {
      Value sub = a.get(0, "sub");
      if (!sub.is_string()) bad(name + "() argument must be str");
      if (name == "count") {
        int64_t n = 0;
        for (size_t k = s.find(sub.s); k != std::string::npos && !sub.s.empty(); k = s.find(sub.s, k + sub.s.size())) ++n;
        return Value::integer(n);
      }
      size_t k = name == "rfind" ? s.rfind(sub.s) : s.find(sub.s);
      if (k == std::string::npos && name == "index") bad("substring not found");
      return Value::integer(k == std::string::npos ? -1 : int64_t(code_point_count(s.substr(0, k))));
    });
  if (name == "join")
    return bound([s](Args& a) {
      std::string out;
      bool first = true;
      for (const auto& v : iterate(a.get(0, "iterable"))) {
        if (!v.is_string()) bad("sequence item: expected str instance");
        out += (first ? "" : s) + v.s;
        first = false;
      }
      return Value::string(out);
    });
  if (name == "removeprefix" || name == "removesuffix")
    return bound([s, name](Args& a) {
      Value p = a.get(0, "prefix");
      if (!p.is_string()) bad(name + "() argument must be str");
      if (name == "removeprefix" && s.compare(0, p.s.size(), p.s) == 0) return Value::string(s.substr(p.s.size()));
      if (name == "removesuffix" && p.s.size() <= s.size() && !p.s.empty() &&
          s.compare(s.size() - p.s.size(), p.s.size(), p.s) == 0)
        return Value::string(s.substr(0, s.size() - p.s.size()));
      return Value::string(s);
    });
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "isupper" ||
      name == "islower")
    return bound([s, name](Args&) {
      if (s.empty()) return Value::boolean(false);
      bool all = true, cased = false;
      for (unsigned char c : s) {
        if (name == "isdigit") all = all && std::isdigit(c);
        else if (name == "isalpha") all = all && std::isalpha(c);
        else if (name == "isspace") all = all && py_space(char(c));
        else if (name == "isalnum") all = all && std::isalnum(c);
        else if (name == "isupper") all = all && !std::islower(c), cased = cased || std::isupper(c);
        else all = all && !std::isupper(c), cased = cased || std::islower(c);
      }
      return Value::boolean(all && (name.rfind("is", 0) == 0 && (name == "isupper" || name == "islower") ? cased : true));
    });
  if (name == "format") return bound([](Args&) -> Value { bad("str.format is not supported"); });
  return Value::undefined(name);
}

}  // namespace

List iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return *v.list;
    case Value::Kind::Dict: {
      List keys;
      for (const auto& [k, _] : v.dict->items) keys.push_back(Value::string(k));
      return keys;
    }
    case Value::Kind::String: {
      List out;
      for (auto& cp : code_points(v.s)) out.push_back(Value::string(cp));
      return out;
    }
    default: bad(fmt::format("'{}' object is not iterable", type_name(v)));
  }
}

Value method_of(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj.s, name);
  if (obj.is_dict() && !obj.is_namespace) {
    auto d = obj.dict;
    if (name == "items")
      return bound([d](Args&) {
        List out;
        for (const auto& [k, v] : d->items) out.push_back(Value::of_list({Value::string(k), v}));
        return Value::of_list(std::move(out));
      });
    if (name == "keys" || name == "values")
      return bound([d, name](Args&) {
        List out;
        for (const auto& [k, v] : d->items) out.push_back(name == "keys" ? Value::string(k) : v);
        return Value::of_list(std::move(out));
      });
    if (name == "get")
      return bound([d](Args& a) {
        Value key = a.get(0, "key");
        const Value* v = key.is_string() ? d->find(key.s) : nullptr;
        return v ? *v : a.get(1, "default", Value::none());
      });
    if (name == "update" || name == "pop" || name == "setdefault" || name == "clear")
      return bound([name](Args&) -> Value { bad(fmt::format("access to attribute '{}' of 'dict' object is unsafe", name)); });
  }
  if (obj.is_list()) {
    auto l = obj.list;
    if (name == "index" || name == "count")
      return bound([l, name](Args& a) {
        Value x = a.get(0, "value");
        int64_t n = 0;
        for (size_t k = 0; k < l->size(); ++k)
          if (equals((*l)[k], x)) {
            if (name == "index") return Value::integer(int64_t(k));
            ++n;
          }
        if (name == "index") bad("value is not in list");
        return Value::integer(n);
      });
    if (name == "append" || name == "extend" || name == "pop" || name == "insert" || name == "remove" || name == "sort" ||
        name == "reverse" || name == "clear")
      return bound([name](Args&) -> Value { bad(fmt::format("access to attribute '{}' of 'list' object is unsafe", name)); });
  }
  return Value::undefined(name);
}

void add_globals(Dict& g) {
  g.set("range", Value::callable([](Args& a) {
          int64_t start = 0, stop, step = 1;
          if (a.pos.size() == 1) stop = as_int(a.pos[0], 0);
          else if (a.pos.size() >= 2) start = as_int(a.pos[0], 0), stop = as_int(a.pos[1], 0), step = a.pos.size() > 2 ? as_int(a.pos[2], 1) : 1;
          else bad("range expected at least 1 argument");
          if (step == 0) bad("range() arg 3 must not be zero");
          List out;
          for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
            out.push_back(Value::integer(k));
            if (out.size() > 1000000) bad("range too large");
          }
          return Value::of_list(std::move(out));
        }));
  g.set("namespace", Value::callable([](Args& a) {
          Dict d;
          for (const auto& p : a.pos)
            if (p.is_dict())
              for (const auto& [k, v] : p.dict->items) d.set(k, v);
          for (const auto& [k, v] : a.kw) d.set(k, v);
          Value ns = Value::of_dict(std::move(d));
          ns.is_namespace = true;
          return ns;
        }));
  g.set("dict", Value::callable([](Args& a) {
          Dict d;
          for (const auto& [k, v] : a.kw) d.set(k, v);
          return Value::of_dict(std::move(d));
        }));
  g.set("raise_exception", Value::callable([](Args& a) -> Value { throw RenderError(to_str(a.get(0, "message"))); }));
  g.set("strftime_now", Value::callable([](Args& a) {
          Value f = a.get(0, "format");
          if (!f.is_string()) bad("strftime_now needs a format string");
          std::time_t t = std::time(nullptr);
          std::tm tm{};
          localtime_r(&t, &tm);
          char buf[256];
          size_t n = std::strftime(buf, sizeof buf, f.s.c_str(), &tm);
          return Value::string(std::string(buf, n));
        }));
}

}  // namespace ds::chat::jinja
