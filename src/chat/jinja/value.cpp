#include "chat/jinja/value.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ds::chat::jinja {

Value Value::of_list(List items) {
  Value v = make(Kind::List);
  v.list = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::of_dict(Dict d) {
  Value v = make(Kind::Dict);
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}

Value Value::callable(NativeFn fn) {
  Value v = make(Kind::Callable);
  v.fn = std::make_shared<NativeFn>(std::move(fn));
  return v;
}

Value Value::from_json(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return none();
    case Json::value_t::boolean: return boolean(j.get<bool>());
    case Json::value_t::number_integer: return integer(j.get<int64_t>());
    case Json::value_t::number_unsigned: return integer(int64_t(j.get<uint64_t>()));
    case Json::value_t::number_float: return number(j.get<double>());
    case Json::value_t::string: return string(j.get<std::string>());
    case Json::value_t::array: {
      List l;
      for (const auto& e : j) l.push_back(from_json(e));
      return of_list(std::move(l));
    }
    case Json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.items.emplace_back(it.key(), from_json(it.value()));
      return of_dict(std::move(d));
    }
    default: return undefined();
  }
}

const Value* Dict::find(const std::string& key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

Value Args::get(size_t n, const char* name, Value fallback) const {
  if (n < pos.size()) return pos[n];
  for (const auto& [k, v] : kw)
    if (k == name) return v;
  return fallback;
}

const char* type_name(const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::Undefined: return "Undefined";
    case K::None: return "NoneType";
    case K::Bool: return "bool";
    case K::Int: return "int";
    case K::Float: return "float";
    case K::String: return "str";
    case K::List: return "list";
    case K::Dict: return v.is_namespace ? "Namespace" : "dict";
    case K::Callable: return "function";
  }
  return "?";
}

bool truthy(const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::Undefined:
    case K::None: return false;
    case K::Bool: return v.b;
    case K::Int: return v.i != 0;
    case K::Float: return v.f != 0;
    case K::String: return !v.s.empty();
    case K::List: return !v.list->empty();
    case K::Dict: return v.is_namespace || !v.dict->items.empty();
    case K::Callable: return true;
  }
  return false;
}

namespace {

std::string float_str(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  return python_float_repr(f);
}

std::string string_repr(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == q) out += std::string("\\") + char(q);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += char(c);
  }
  return out + q;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += char(c);
    }
  }
  out += '"';
}

struct JsonWriter {
  std::optional<int> indent;
  std::string item_sep, key_sep;
  bool sort_keys;
  std::string out;

  void newline(int depth) {
    out += '\n';
    out.append(size_t(*indent) * size_t(depth), ' ');
  }
  void write(const Value& v, int depth) {
    using K = Value::Kind;
    switch (v.kind) {
      case K::None: out += "null"; return;
      case K::Bool: out += v.b ? "true" : "false"; return;
      case K::Int: out += std::to_string(v.i); return;
      case K::Float:
        out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity") : python_float_repr(v.f);
        return;
      case K::String: json_string(out, v.s); return;
      case K::List: {
        if (v.list->empty()) {
          out += "[]";
          return;
        }
        out += '[';
        for (size_t k = 0; k < v.list->size(); ++k) {
          if (k) out += item_sep;
          if (indent) newline(depth + 1);
          write((*v.list)[k], depth + 1);
        }
        if (indent) newline(depth);
        out += ']';
        return;
      }
      case K::Dict: {
        if (v.dict->items.empty()) {
          out += "{}";
          return;
        }
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& kv : v.dict->items) items.push_back(&kv);
        if (sort_keys) std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        out += '{';
        for (size_t k = 0; k < items.size(); ++k) {
          if (k) out += item_sep;
          if (indent) newline(depth + 1);
          json_string(out, items[k]->first);
          out += key_sep;
          write(items[k]->second, depth + 1);
        }
        if (indent) newline(depth);
        out += '}';
        return;
      }
      case K::Undefined: throw RenderError("Object of type Undefined is not JSON serializable");
      case K::Callable: throw RenderError("Object of type function is not JSON serializable");
    }
  }
};

}  // namespace

std::string repr(const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::String: return string_repr(v.s);
    case K::List: {
      std::string out = "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      return out + "]";
    }
    case K::Dict: {
      if (v.is_namespace) return "<Namespace>";
      std::string out = "{";
      bool first = true;
      for (const auto& [key, val] : v.dict->items) {
        out += (first ? "" : ", ") + string_repr(key) + ": " + repr(val);
        first = false;
      }
      return out + "}";
    }
    default: return to_str(v);
  }
}

std::string to_str(const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::Undefined: return "";
    case K::None: return "None";
    case K::Bool: return v.b ? "True" : "False";
    case K::Int: return std::to_string(v.i);
    case K::Float: return float_str(v.f);
    case K::String: return v.s;
    case K::Callable: return "<function>";
    default: return repr(v);
  }
}

bool equals(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) return a.as_double() == b.as_double();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::Undefined:
    case K::None: return true;
    case K::String: return a.s == b.s;
    case K::List:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case K::Dict:
      if (a.dict == b.dict) return true;
      if (a.is_namespace || b.is_namespace || a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, v] : a.dict->items) {
        const Value* o = b.dict->find(k);
        if (!o || !equals(v, *o)) return false;
      }
      return true;
    case K::Callable: return a.fn == b.fn;
    default: return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Value::Kind::Float && b.kind != Value::Kind::Float) {
      const int64_t x = a.kind == Value::Kind::Bool ? a.b : a.i, y = b.kind == Value::Kind::Bool ? b.b : b.i;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.is_list() && b.is_list()) {
    for (size_t k = 0; k < std::min(a.list->size(), b.list->size()); ++k)
      if (int c = compare((*a.list)[k], (*b.list)[k])) return c;
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  throw RenderError(fmt::format("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b)));
}

std::string to_json(const Value& v, std::optional<int> indent, std::optional<std::pair<std::string, std::string>> seps,
                    bool sort_keys) {
  JsonWriter w{indent, indent ? "," : ", ", ": ", sort_keys, {}};
  if (seps) {
    w.item_sep = seps->first;
    w.key_sep = seps->second;
  }
  w.write(v, 0);
  return w.out;
}

Json to_json_value(const Value& v) {
  Json j;
  if (!try_parse_json(to_json(v, std::nullopt, std::nullopt, false), j)) throw RenderError("value is not JSON");
  return j;
}

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t k = 0; k < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[k]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    n = std::min(n, s.size() - k);
    out.push_back(s.substr(k, n));
    k += n;
  }
  return out;
}

size_t code_point_count(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

}  // namespace ds::chat::jinja
