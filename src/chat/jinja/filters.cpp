// Jinja's filters and tests as chat templates use them (transformers' `tojson` replaces Jinja's).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "chat/jinja/builtins.h"

namespace ds::chat::jinja {
namespace {

[[noreturn]] void bad(const std::string& what) { throw RenderError(what); }

// Jinja's attribute lookup for filters with attribute= ("a.b" walks nested dicts; "0" indexes).
Value attribute(const Value& v, const std::string& path) {
  Value cur = v;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (cur.is_dict()) {
      const Value* x = cur.dict->find(part);
      cur = x ? *x : Value::undefined(part);
    } else if (cur.is_list() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      size_t k = std::stoul(part);
      cur = k < cur.list->size() ? (*cur.list)[k] : Value::undefined(part);
    } else {
      cur = Value::undefined(part);
    }
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return cur;
}

std::string need_string(const Value& v, const char* what) {
  if (!v.is_string()) bad(fmt::format("{} needs a string, got {}", what, type_name(v)));
  return v.s;
}

Args rest_args(const Args& a, size_t from) {
  Args r;
  r.callee = a.callee;
  for (size_t k = from; k < a.pos.size(); ++k) r.pos.push_back(a.pos[k]);
  r.kw = a.kw;
  return r;
}

// select/reject/selectattr/rejectattr: keep the items whose test (default: truthiness) is `keep`.
Value select(const Value& v, Args& a, bool by_attr, bool keep) {
  List out;
  std::string attr;
  size_t next = 0;
  if (by_attr) attr = need_string(a.get(next++, "attribute"), "selectattr attribute");
  Value test = a.get(next, "test");
  Args targs = rest_args(a, next + 1);
  for (const auto& item : iterate(v)) {
    Value x = by_attr ? attribute(item, attr) : item;
    bool ok = test.is_undefined() ? truthy(x) : apply_test(need_string(test, "test name"), x, targs);
    if (ok == keep) out.push_back(item);
  }
  return Value::of_list(std::move(out));
}

std::string indent(const std::string& s, const Value& width, bool first, bool blank) {
  const std::string pad = width.is_string() ? width.s : std::string(size_t(width.is_undefined() ? 4 : width.i), ' ');
  std::string out;
  size_t b = 0;
  bool line0 = true;
  while (b <= s.size()) {
    size_t e = s.find('\n', b);
    std::string line = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool is_blank = std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t'; });
    if ((line0 ? first : true) && (blank || !is_blank)) out += pad;
    out += line;
    line0 = false;
    if (e == std::string::npos) break;
    out += '\n';
    b = e + 1;
  }
  return out;
}

Value sorted(const Value& v, Args& a) {
  List items = iterate(v);
  const bool reverse = truthy(a.get(0, "reverse", Value::boolean(false)));
  const bool case_sensitive = truthy(a.get(1, "case_sensitive", Value::boolean(false)));
  Value attr = a.get(2, "attribute");
  auto key = [&](const Value& x) {
    Value k = attr.is_string() ? attribute(x, attr.s) : x;
    if (k.is_string() && !case_sensitive) {
      std::string s = k.s;
      for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
      return Value::string(s);
    }
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? compare(key(y), key(x)) < 0 : compare(key(x), key(y)) < 0;
  });
  return Value::of_list(std::move(items));
}

using FilterFn = Value (*)(const Value&, Args&);

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> f = {
      {"tojson", [](const Value& v, Args& a) {
         if (truthy(a.get(0, "ensure_ascii", Value::boolean(false)))) bad("tojson(ensure_ascii=True) is not supported");
         Value ind = a.get(1, "indent");
         std::optional<int> indent;
         if (ind.kind == Value::Kind::Int) indent = int(ind.i);
         else if (!ind.is_undefined() && !ind.is_none()) bad("tojson indent must be an integer");
         std::optional<std::pair<std::string, std::string>> seps;
         Value sp = a.get(2, "separators");
         if (sp.is_list() && sp.list->size() == 2) seps = {{to_str((*sp.list)[0]), to_str((*sp.list)[1])}};
         return Value::string(to_json(v, indent, seps, truthy(a.get(3, "sort_keys", Value::boolean(false)))));
       }},
      {"trim", [](const Value& v, Args& a) {
         Value chars = a.get(0, "chars");
         Args strip_args;
         strip_args.pos.push_back(chars.is_undefined() ? Value::none() : chars);
         return method_of(Value::string(to_str(v)), "strip").fn->operator()(strip_args);
       }},
      {"length", [](const Value& v, Args&) {
         if (v.is_string()) return Value::integer(int64_t(code_point_count(v.s)));
         if (v.is_dict()) return Value::integer(int64_t(v.dict->items.size()));
         if (v.is_list()) return Value::integer(int64_t(v.list->size()));
         if (v.is_undefined()) return Value::integer(0);
         bad(fmt::format("object of type '{}' has no len()", type_name(v)));
       }},
      {"upper", [](const Value& v, Args& a) { return method_of(Value::string(to_str(v)), "upper").fn->operator()(a); }},
      {"lower", [](const Value& v, Args& a) { return method_of(Value::string(to_str(v)), "lower").fn->operator()(a); }},
      {"capitalize", [](const Value& v, Args& a) { return method_of(Value::string(to_str(v)), "capitalize").fn->operator()(a); }},
      {"title", [](const Value& v, Args& a) { return method_of(Value::string(to_str(v)), "title").fn->operator()(a); }},
      {"string", [](const Value& v, Args&) { return Value::string(to_str(v)); }},
      {"safe", [](const Value& v, Args&) { return v; }},
      {"replace", [](const Value& v, Args& a) { return method_of(Value::string(to_str(v)), "replace").fn->operator()(a); }},
      {"join", [](const Value& v, Args& a) {
         const std::string sep = a.get(0, "d", Value::string("")).is_string() ? a.get(0, "d", Value::string("")).s : "";
         Value attr = a.get(1, "attribute");
         std::string out;
         bool first = true;
         for (const auto& x : iterate(v)) {
           out += (first ? "" : sep) + to_str(attr.is_string() ? attribute(x, attr.s) : x);
           first = false;
         }
         return Value::string(out);
       }},
      {"default", [](const Value& v, Args& a) {
         const bool boolean = truthy(a.get(1, "boolean", Value::boolean(false)));
         if (v.is_undefined() || (boolean && !truthy(v))) return a.get(0, "default_value", Value::string(""));
         return v;
       }},
      {"first", [](const Value& v, Args&) {
         List l = iterate(v);
         return l.empty() ? Value::undefined("first") : l.front();
       }},
      {"last", [](const Value& v, Args&) {
         List l = iterate(v);
         return l.empty() ? Value::undefined("last") : l.back();
       }},
      {"list", [](const Value& v, Args&) { return Value::of_list(iterate(v)); }},
      {"reverse", [](const Value& v, Args&) {
         if (v.is_string()) {
           auto cps = code_points(v.s);
           std::string out;
           for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
           return Value::string(out);
         }
         List l = iterate(v);
         std::reverse(l.begin(), l.end());
         return Value::of_list(std::move(l));
       }},
      {"items", [](const Value& v, Args& a) {
         if (v.is_undefined()) return Value::of_list({});
         if (!v.is_dict()) bad("items filter needs a mapping");
         return method_of(v, "items").fn->operator()(a);
       }},
      {"dictsort", [](const Value& v, Args&) {
         if (!v.is_dict()) bad("dictsort needs a mapping");
         Args none;
         List items = *method_of(v, "items").fn->operator()(none).list;
         std::stable_sort(items.begin(), items.end(), [](const Value& x, const Value& y) {
           std::string a = (*x.list)[0].s, b = (*y.list)[0].s;
           for (auto& c : a) c = char(std::tolower(static_cast<unsigned char>(c)));
           for (auto& c : b) c = char(std::tolower(static_cast<unsigned char>(c)));
           return a < b;
         });
         return Value::of_list(std::move(items));
       }},
      {"select", [](const Value& v, Args& a) { return select(v, a, false, true); }},
      {"reject", [](const Value& v, Args& a) { return select(v, a, false, false); }},
      {"selectattr", [](const Value& v, Args& a) { return select(v, a, true, true); }},
      {"rejectattr", [](const Value& v, Args& a) { return select(v, a, true, false); }},
      {"map", [](const Value& v, Args& a) {
         List out;
         Value attr = a.get(99, "attribute");
         if (attr.is_string()) {
           Value dflt = a.get(99, "default");
           for (const auto& x : iterate(v)) {
             Value y = attribute(x, attr.s);
             out.push_back(y.is_undefined() && !dflt.is_undefined() ? dflt : y);
           }
         } else {
           const std::string name = need_string(a.get(0, "filter"), "map filter name");
           if (!has_filter(name)) bad(fmt::format("the filter '{}' is not supported", name));
           Args rest = rest_args(a, 1);
           for (const auto& x : iterate(v)) out.push_back(apply_filter(name, x, rest));
         }
         return Value::of_list(std::move(out));
       }},
      {"unique", [](const Value& v, Args&) {
         List out;
         for (const auto& x : iterate(v))
           if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return equals(x, y); })) out.push_back(x);
         return Value::of_list(std::move(out));
       }},
      {"sort", [](const Value& v, Args& a) { return sorted(v, a); }},
      {"min", [](const Value& v, Args&) {
         List l = iterate(v);
         if (l.empty()) return Value::undefined("min");
         return *std::min_element(l.begin(), l.end(), [](const Value& x, const Value& y) { return compare(x, y) < 0; });
       }},
      {"max", [](const Value& v, Args&) {
         List l = iterate(v);
         if (l.empty()) return Value::undefined("max");
         return *std::max_element(l.begin(), l.end(), [](const Value& x, const Value& y) { return compare(x, y) < 0; });
       }},
      {"sum", [](const Value& v, Args& a) {
         Value attr = a.get(0, "attribute");
         Value total = a.get(1, "start", Value::integer(0));
         for (const auto& x : iterate(v)) {
           Value y = attr.is_string() ? attribute(x, attr.s) : x;
           if (!y.is_number() || !total.is_number()) bad("sum needs numbers");
           total = total.kind == Value::Kind::Float || y.kind == Value::Kind::Float ? Value::number(total.as_double() + y.as_double())
                                                                                      : Value::integer(total.i + y.i);
         }
         return total;
       }},
      {"int", [](const Value& v, Args& a) {
         if (v.kind == Value::Kind::Int) return v;
         if (v.kind == Value::Kind::Bool) return Value::integer(v.b);
         if (v.kind == Value::Kind::Float) return Value::integer(int64_t(v.f));
         if (v.is_string()) try {
             size_t used = 0;
             std::string s = v.s;
             long long x = std::stoll(s, &used);
             if (used == s.size()) return Value::integer(x);
             double d = std::stod(s, &used);
             if (used == s.size()) return Value::integer(int64_t(d));
           } catch (...) {
           }
         return a.get(0, "default", Value::integer(0));
       }},
      {"float", [](const Value& v, Args& a) {
         if (v.is_number()) return Value::number(v.as_double());
         if (v.is_string()) try {
             size_t used = 0;
             double d = std::stod(v.s, &used);
             if (used == v.s.size()) return Value::number(d);
           } catch (...) {
           }
         return a.get(0, "default", Value::number(0.0));
       }},
      {"abs", [](const Value& v, Args&) {
         if (v.kind == Value::Kind::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
         if (v.kind == Value::Kind::Float) return Value::number(std::fabs(v.f));
         bad("abs needs a number");
       }},
      {"round", [](const Value& v, Args& a) {
         if (!v.is_number()) bad("round needs a number");
         const int64_t prec = a.get(0, "precision", Value::integer(0)).i;
         const Value method = a.get(1, "method", Value::string("common"));
         const double m = std::pow(10.0, double(prec)), x = v.as_double() * m;
         double r = method.s == "floor" ? std::floor(x) : method.s == "ceil" ? std::ceil(x) : std::round(x);
         return Value::number(r / m);
       }},
      {"indent", [](const Value& v, Args& a) {
         return Value::string(indent(to_str(v), a.get(0, "width"), truthy(a.get(1, "first", Value::boolean(false))),
                                     truthy(a.get(2, "blank", Value::boolean(false)))));
       }},
      {"escape", [](const Value& v, Args&) {
         std::string out;
         for (char c : to_str(v)) {
           switch (c) {
             case '&': out += "&amp;"; break;
             case '<': out += "&lt;"; break;
             case '>': out += "&gt;"; break;
             case '"': out += "&#34;"; break;
             case '\'': out += "&#39;"; break;
             default: out += c;
           }
         }
         return Value::string(out);
       }},
      {"wordcount", [](const Value& v, Args&) {
         int64_t n = 0;
         bool in_word = false;
         for (unsigned char c : to_str(v)) {
           bool w = std::isalnum(c) || c == '_' || c >= 0x80;
           n += w && !in_word;
           in_word = w;
         }
         return Value::integer(n);
       }},
      {"attr", [](const Value& v, Args& a) {
         const std::string name = need_string(a.get(0, "name"), "attr name");
         if (v.is_dict() && v.is_namespace) {
           const Value* x = v.dict->find(name);
           return x ? *x : Value::undefined(name);
         }
         Value m = method_of(v, name);
         return m;
       }},
  };
  return f;
}

using TestFn = bool (*)(const Value&, Args&);

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> t = {
      {"defined", [](const Value& v, Args&) { return !v.is_undefined(); }},
      {"undefined", [](const Value& v, Args&) { return v.is_undefined(); }},
      {"none", [](const Value& v, Args&) { return v.is_none(); }},
      {"string", [](const Value& v, Args&) { return v.is_string(); }},
      {"number", [](const Value& v, Args&) { return v.is_number(); }},
      {"integer", [](const Value& v, Args&) { return v.kind == Value::Kind::Int; }},
      {"float", [](const Value& v, Args&) { return v.kind == Value::Kind::Float; }},
      {"boolean", [](const Value& v, Args&) { return v.kind == Value::Kind::Bool; }},
      {"true", [](const Value& v, Args&) { return v.kind == Value::Kind::Bool && v.b; }},
      {"false", [](const Value& v, Args&) { return v.kind == Value::Kind::Bool && !v.b; }},
      {"mapping", [](const Value& v, Args&) { return v.is_dict() && !v.is_namespace; }},
      {"iterable", [](const Value& v, Args&) { return v.is_list() || v.is_dict() || v.is_string(); }},
      {"sequence", [](const Value& v, Args&) { return v.is_list() || v.is_dict() || v.is_string(); }},
      {"callable", [](const Value& v, Args&) { return v.kind == Value::Kind::Callable; }},
      {"odd", [](const Value& v, Args&) { return v.kind == Value::Kind::Int && (v.i % 2 != 0); }},
      {"even", [](const Value& v, Args&) { return v.kind == Value::Kind::Int && (v.i % 2 == 0); }},
      {"divisibleby", [](const Value& v, Args& a) {
         Value d = a.get(0, "num");
         return v.kind == Value::Kind::Int && d.kind == Value::Kind::Int && d.i != 0 && v.i % d.i == 0;
       }},
      {"lower", [](const Value& v, Args&) {
         return v.is_string() && std::none_of(v.s.begin(), v.s.end(), [](unsigned char c) { return std::isupper(c); });
       }},
      {"upper", [](const Value& v, Args&) {
         return v.is_string() && std::none_of(v.s.begin(), v.s.end(), [](unsigned char c) { return std::islower(c); });
       }},
      {"sameas", [](const Value& v, Args& a) {
         Value o = a.get(0, "other");
         if (v.kind != o.kind) return false;
         if (v.is_list()) return v.list == o.list;
         if (v.is_dict()) return v.dict == o.dict;
         return equals(v, o);
       }},
      {"eq", [](const Value& v, Args& a) { return equals(v, a.get(0, "other")); }},
      {"ne", [](const Value& v, Args& a) { return !equals(v, a.get(0, "other")); }},
      {"lt", [](const Value& v, Args& a) { return compare(v, a.get(0, "other")) < 0; }},
      {"le", [](const Value& v, Args& a) { return compare(v, a.get(0, "other")) <= 0; }},
      {"gt", [](const Value& v, Args& a) { return compare(v, a.get(0, "other")) > 0; }},
      {"ge", [](const Value& v, Args& a) { return compare(v, a.get(0, "other")) >= 0; }},
      {"in", [](const Value& v, Args& a) {
         Value c = a.get(0, "seq");
         if (c.is_string()) return v.is_string() && c.s.find(v.s) != std::string::npos;
         if (c.is_dict()) return v.is_string() && c.dict->find(v.s) != nullptr;
         for (const auto& x : iterate(c))
           if (equals(x, v)) return true;
         return false;
       }},
  };
  return t;
}

const std::map<std::string, std::string>& aliases() {
  static const std::map<std::string, std::string> a = {
      {"d", "default"}, {"e", "escape"}, {"count", "length"}, {"equalto", "eq"}, {"==", "eq"}, {"!=", "ne"},
      {"<", "lt"},      {"<=", "le"},    {">", "gt"},         {">=", "ge"},     {"lessthan", "lt"}, {"greaterthan", "gt"}};
  return a;
}

std::string canonical(const std::string& name) {
  auto it = aliases().find(name);
  return it == aliases().end() ? name : it->second;
}

}  // namespace

bool has_filter(const std::string& name) { return filters().count(canonical(name)) > 0; }
bool has_test(const std::string& name) { return tests().count(canonical(name)) > 0; }

Value apply_filter(const std::string& name, const Value& v, Args& args) {
  auto it = filters().find(canonical(name));
  if (it == filters().end()) bad(fmt::format("the filter '{}' is not supported", name));
  return it->second(v, args);
}

bool apply_test(const std::string& name, const Value& v, Args& args) {
  auto it = tests().find(canonical(name));
  if (it == tests().end()) bad(fmt::format("the test '{}' is not supported", name));
  return it->second(v, args);
}

}  // namespace ds::chat::jinja
