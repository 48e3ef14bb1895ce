// Values of the Jinja interpreter, with Python's semantics where chat templates depend on them:
// str() and repr() text, truthiness, equality and ordering, and json.dumps as transformers'
// `tojson` filter calls it. Lists and dicts are shared (Python reference semantics); only a
// namespace() is ever mutated (the sandbox transformers uses forbids mutating anything else).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "chat/json_text.h"
#include "util/error.h"

namespace ds::chat::jinja {

// A template error at render time (raise_exception, undefined access, type errors): the request
// cannot be rendered. Parse-time refusals are UnsupportedError.
class RenderError : public ds::Error {
 public:
  explicit RenderError(const std::string& m) : ds::Error(m) {}
};
class UnsupportedError : public ds::Error {
 public:
  explicit UnsupportedError(const std::string& m) : ds::Error(m) {}
};

struct Value;
using List = std::vector<Value>;
struct Dict;
struct Args;
using NativeFn = std::function<Value(Args&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; for Undefined: the name that was missing (for messages)
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<NativeFn> fn;
  bool is_namespace = false;  // a namespace(): a dict whose attributes may be assigned

  static Value undefined(std::string name = "") {
    Value v;
    v.s = std::move(name);
    return v;
  }
  static Value none() { return make(Kind::None); }
  static Value boolean(bool x) {
    Value v = make(Kind::Bool);
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v = make(Kind::Int);
    v.i = x;
    return v;
  }
  static Value number(double x) {
    Value v = make(Kind::Float);
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v = make(Kind::String);
    v.s = std::move(x);
    return v;
  }
  static Value of_list(List items);
  static Value of_dict(Dict d);
  static Value callable(NativeFn fn);
  static Value from_json(const Json& j);

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_list() const { return kind == Kind::List; }
  bool is_dict() const { return kind == Kind::Dict; }
  double as_double() const { return kind == Kind::Float ? f : kind == Kind::Bool ? double(b) : double(i); }

 private:
  static Value make(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;  // insertion order, as Python dicts
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

// Call arguments: positional, then keyword.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  std::string callee;  // for messages
  // The n-th positional or the keyword `name`; `fallback` when neither is given.
  Value get(size_t n, const char* name, Value fallback = Value::undefined()) const;
};

const char* type_name(const Value& v);  // Python's type names: str, int, list, dict, NoneType ...
bool truthy(const Value& v);
std::string to_str(const Value& v);   // Python str()
std::string repr(const Value& v);     // Python repr()
bool equals(const Value& a, const Value& b);
// <0, 0, >0 as Python orders numbers with numbers and strings with strings; RenderError otherwise.
int compare(const Value& a, const Value& b);
// json.dumps(v, ensure_ascii=False, indent=indent, separators=..., sort_keys=sort_keys).
std::string to_json(const Value& v, std::optional<int> indent, std::optional<std::pair<std::string, std::string>> seps,
                    bool sort_keys);
Json to_json_value(const Value& v);

// Python strings index by code point.
std::vector<std::string> code_points(const std::string& s);
size_t code_point_count(const std::string& s);

}  // namespace ds::chat::jinja
