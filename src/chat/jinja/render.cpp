// Statements and expressions of a parsed template, evaluated with Jinja2's scoping: a for loop
// or macro call opens a scope (assignments inside do not leak out), if blocks do not.
#include "chat/jinja/render.h"

#include <fmt/format.h>

#include <cmath>

#include "chat/jinja/builtins.h"

namespace ds::chat::jinja {
namespace {

using K = Node::Kind;

struct BreakSignal {};
struct ContinueSignal {};

struct Scope {
  Dict vars;
  const Scope* parent = nullptr;
  Scope* parent_mut = nullptr;
  const Value* find(const std::string& n) const {
    for (const Scope* s = this; s; s = s->parent)
      if (const Value* v = s->vars.find(n)) return v;
    return nullptr;
  }
};

[[noreturn]] void error(const Node& n, const std::string& what) {
  throw RenderError(fmt::format("template line {}: {}", n.line, what));
}

// Python's floor division and modulo.
int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

class Renderer {
 public:
  explicit Renderer(Scope& root) : root_(root) {}

  void body(const Body& b, Scope& sc, std::string& out) {
    for (const auto& n : b) stmt(*n, sc, out);
  }

 private:
  void stmt(const Node& n, Scope& sc, std::string& out) {
    switch (n.kind) {
      case K::Text: out += n.name; return;
      case K::Output: out += to_str(eval(*n.kids[0], sc)); return;
      case K::If:
        for (size_t k = 0; k < n.kids.size(); ++k)
          if (truthy(eval(*n.kids[k], sc))) return body(n.bodies[k], sc, out);
        if (n.bodies.size() > n.kids.size()) body(n.bodies.back(), sc, out);
        return;
      case K::For: return for_loop(n, sc, out);
      case K::Set: return set(n, sc);
      case K::SetBlock: {
        std::string text;
        body(n.bodies[0], sc, text);
        sc.vars.set(n.name, Value::string(text));
        return;
      }
      case K::Macro: return define_macro(n, sc);
      case K::Break: throw BreakSignal{};
      case K::Continue: throw ContinueSignal{};
      default: error(n, "not a statement");
    }
  }

  void set(const Node& n, Scope& sc) {
    Value v = eval(*n.kids[0], sc);
    if (!n.attr.empty()) {
      const Value* ns = sc.find(n.name);
      if (!ns || !ns->is_namespace) error(n, fmt::format("cannot assign attribute on non-namespace object '{}'", n.name));
      ns->dict->set(n.attr, std::move(v));
      return;
    }
    if (n.targets.size() == 1) {
      sc.vars.set(n.targets[0], std::move(v));
      return;
    }
    List items = iterate(v);
    if (items.size() != n.targets.size())
      error(n, fmt::format("cannot unpack {} values into {} names", items.size(), n.targets.size()));
    for (size_t k = 0; k < items.size(); ++k) sc.vars.set(n.targets[k], items[k]);
  }

  void for_loop(const Node& n, Scope& sc, std::string& out) {
    const Value seq = eval(*n.kids[0], sc);
    if (seq.is_none()) error(n, "'NoneType' object is not iterable");
    List all = iterate(seq);
    std::vector<Value> items;
    for (auto& item : all) {
      if (n.kids[1]) {  // {% for x in xs if cond %}: filtered before the loop counts
        Scope probe{Dict{}, &sc, nullptr};
        bind_targets(n, probe, item);
        if (!truthy(eval(*n.kids[1], probe))) continue;
      }
      items.push_back(item);
    }
    if (items.empty()) {
      if (n.bodies.size() > 1) body(n.bodies[1], sc, out);
      return;
    }
    const int64_t len = int64_t(items.size());
    for (int64_t k = 0; k < len; ++k) {
      Scope inner{Dict{}, &sc, nullptr};
      bind_targets(n, inner, items[size_t(k)]);
      Dict loop;
      loop.set("index", Value::integer(k + 1));
      loop.set("index0", Value::integer(k));
      loop.set("revindex", Value::integer(len - k));
      loop.set("revindex0", Value::integer(len - k - 1));
      loop.set("first", Value::boolean(k == 0));
      loop.set("last", Value::boolean(k == len - 1));
      loop.set("length", Value::integer(len));
      loop.set("depth", Value::integer(1));
      loop.set("depth0", Value::integer(0));
      loop.set("previtem", k > 0 ? items[size_t(k - 1)] : Value::undefined("previtem"));
      loop.set("nextitem", k + 1 < len ? items[size_t(k + 1)] : Value::undefined("nextitem"));
      loop.set("cycle", Value::callable([k](Args& a) -> Value {
                 if (a.pos.empty()) throw RenderError("no items for cycling given");
                 return a.pos[size_t(k) % a.pos.size()];
               }));
      inner.vars.set("loop", Value::of_dict(std::move(loop)));
      try {
        body(n.bodies[0], inner, out);
      } catch (const ContinueSignal&) {
      } catch (const BreakSignal&) {
        break;
      }
    }
  }

  void bind_targets(const Node& n, Scope& sc, const Value& item) {
    if (n.targets.size() == 1) {
      sc.vars.set(n.targets[0], item);
      return;
    }
    List parts = iterate(item);
    if (parts.size() != n.targets.size())
      error(n, fmt::format("cannot unpack {} values into {} loop variables", parts.size(), n.targets.size()));
    for (size_t k = 0; k < parts.size(); ++k) sc.vars.set(n.targets[k], parts[k]);
  }

  void define_macro(const Node& n, Scope& sc) {
    const Node* def = &n;
    Renderer* self = this;
    sc.vars.set(n.name, Value::callable([def, self](Args& a) -> Value {
      if (a.pos.size() > def->targets.size())
        throw RenderError(fmt::format("macro '{}' takes not more than {} argument(s)", def->name, def->targets.size()));
      Scope frame{Dict{}, &self->root_, nullptr};
      for (size_t k = 0; k < def->targets.size(); ++k) {
        Value v = a.get(k, def->targets[k].c_str(), Value::undefined(def->targets[k]));
        if (v.is_undefined() && def->defaults[k]) v = self->eval(*def->defaults[k], frame);
        frame.vars.set(def->targets[k], v);
      }
      for (const auto& [key, v] : a.kw) {
        bool known = false;
        for (const auto& t : def->targets) known = known || t == key;
        if (!known) throw RenderError(fmt::format("macro '{}' has no argument '{}'", def->name, key));
      }
      std::string text;
      self->body(def->bodies[0], frame, text);
      return Value::string(text);
    }));
  }

  Args call_args(const Node& n, size_t first, Scope& sc, const std::string& callee) {
    Args a;
    a.callee = callee;
    const size_t nkw = n.kw.size();
    for (size_t k = first; k < n.kids.size() - nkw; ++k) a.pos.push_back(eval(*n.kids[k], sc));
    for (size_t k = 0; k < nkw; ++k) a.kw.emplace_back(n.kw[k], eval(*n.kids[n.kids.size() - nkw + k], sc));
    return a;
  }

 public:
  Value eval(const Node& n, Scope& sc) {
    switch (n.kind) {
      case K::Literal: return n.value;
      case K::Name: {
        const Value* v = sc.find(n.name);
        return v ? *v : Value::undefined(n.name);
      }
      case K::Attr: return attr(n, eval(*n.kids[0], sc), n.name);
      case K::Item: return item(n, eval(*n.kids[0], sc), eval(*n.kids[1], sc));
      case K::Slice: return slice(n, sc);
      case K::Call: {
        Value f = eval(*n.kids[0], sc);
        if (f.kind != Value::Kind::Callable) {
          const std::string what = n.kids[0]->kind == K::Name || n.kids[0]->kind == K::Attr ? n.kids[0]->name : "value";
          if (f.is_undefined()) error(n, fmt::format("'{}' is undefined", what));
          error(n, fmt::format("'{}' object is not callable", type_name(f)));
        }
        Args a = call_args(n, 1, sc, n.kids[0]->name);
        return (*f.fn)(a);
      }
      case K::Filter: {
        Value v = eval(*n.kids[0], sc);
        Args a = call_args(n, 1, sc, n.name);
        try {
          return apply_filter(n.name, v, a);
        } catch (const RenderError& e) {
          error(n, e.what());
        }
      }
      case K::Test: {
        Value v = eval(*n.kids[0], sc);
        Args a = call_args(n, 1, sc, n.name);
        return Value::boolean(apply_test(n.name, v, a) != n.negated);
      }
      case K::Unary: {
        Value v = eval(*n.kids[0], sc);
        if (n.name == "not") return Value::boolean(!truthy(v));
        if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool)
          return Value::integer(n.name == "-" ? -(v.kind == Value::Kind::Bool ? int64_t(v.b) : v.i) : v.i);
        if (v.kind == Value::Kind::Float) return Value::number(n.name == "-" ? -v.f : v.f);
        error(n, fmt::format("bad operand type for unary {}: '{}'", n.name, type_name(v)));
      }
      case K::Binary: return binary(n, sc);
      case K::Cond:
        if (truthy(eval(*n.kids[0], sc))) return eval(*n.kids[1], sc);
        return n.kids[2] ? eval(*n.kids[2], sc) : Value::undefined();
      case K::ListLit:
      case K::TupleLit: {
        List l;
        for (const auto& k : n.kids) l.push_back(eval(*k, sc));
        return Value::of_list(std::move(l));
      }
      case K::DictLit: {
        Dict d;
        for (size_t k = 0; k + 1 < n.kids.size(); k += 2) {
          Value key = eval(*n.kids[k], sc);
          if (!key.is_string()) error(n, "dict keys other than strings are not supported");
          d.set(key.s, eval(*n.kids[k + 1], sc));
        }
        return Value::of_dict(std::move(d));
      }
      default: error(n, "not an expression");
    }
  }

 private:
  Value attr(const Node& n, const Value& obj, const std::string& name) {
    if (obj.is_undefined()) error(n, fmt::format("'{}' is undefined", obj.s.empty() ? "value" : obj.s));
    if (obj.is_dict()) {
      if (!obj.is_namespace) {
        Value m = method_of(obj, name);
        if (!m.is_undefined()) return m;
      }
      if (const Value* v = obj.dict->find(name)) return *v;
      return Value::undefined(name);
    }
    Value m = method_of(obj, name);
    if (!m.is_undefined()) return m;
    if (obj.is_list() && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0])))
      return item(n, obj, Value::integer(std::stoll(name)));
    return Value::undefined(name);
  }

  Value item(const Node& n, const Value& obj, const Value& key) {
    if (obj.is_undefined()) error(n, fmt::format("'{}' is undefined", obj.s.empty() ? "value" : obj.s));
    if (obj.is_dict()) {
      if (key.is_string())
        if (const Value* v = obj.dict->find(key.s)) return *v;
      if (key.is_string() && !obj.is_namespace) {
        Value m = method_of(obj, key.s);
        if (!m.is_undefined()) return m;
      }
      return Value::undefined(key.is_string() ? key.s : to_str(key));
    }
    if ((obj.is_list() || obj.is_string()) && (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool)) {
      std::vector<std::string> cps;
      if (obj.is_string()) cps = code_points(obj.s);
      const int64_t size = obj.is_list() ? int64_t(obj.list->size()) : int64_t(cps.size());
      int64_t k = key.kind == Value::Kind::Bool ? key.b : key.i;
      if (k < 0) k += size;
      if (k < 0 || k >= size) return Value::undefined("index");
      return obj.is_list() ? (*obj.list)[size_t(k)] : Value::string(cps[size_t(k)]);
    }
    if (key.is_string()) return attr(n, obj, key.s);
    return Value::undefined();
  }

  Value slice(const Node& n, Scope& sc) {
    const Value obj = eval(*n.kids[0], sc);
    auto opt = [&](size_t k) -> std::optional<int64_t> {
      if (!n.kids[k]) return std::nullopt;
      Value v = eval(*n.kids[k], sc);
      if (v.is_none()) return std::nullopt;
      if (v.kind != Value::Kind::Int) error(n, "slice indices must be integers");
      return v.i;
    };
    const auto start = opt(1), stop = opt(2), step_opt = opt(3);
    const int64_t step = step_opt.value_or(1);
    if (step == 0) error(n, "slice step cannot be zero");
    std::vector<std::string> cps;
    if (obj.is_string()) cps = code_points(obj.s);
    else if (!obj.is_list()) error(n, fmt::format("'{}' object is not subscriptable", type_name(obj)));
    const int64_t size = obj.is_list() ? int64_t(obj.list->size()) : int64_t(cps.size());
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v < 0 ? *v + size : *v;
      if (step > 0) return std::clamp<int64_t>(x, 0, size);
      return std::clamp<int64_t>(x, -1, size - 1);
    };
    const int64_t b = clamp(start, step > 0 ? 0 : size - 1), e = clamp(stop, step > 0 ? size : -1);
    List l;
    std::string s;
    for (int64_t k = b; step > 0 ? k < e : k > e; k += step) {
      if (obj.is_list()) l.push_back((*obj.list)[size_t(k)]);
      else s += cps[size_t(k)];
    }
    return obj.is_list() ? Value::of_list(std::move(l)) : Value::string(std::move(s));
  }

  Value binary(const Node& n, Scope& sc) {
    const std::string& op = n.name;
    if (op == "and") {
      Value l = eval(*n.kids[0], sc);
      return truthy(l) ? eval(*n.kids[1], sc) : l;
    }
    if (op == "or") {
      Value l = eval(*n.kids[0], sc);
      return truthy(l) ? l : eval(*n.kids[1], sc);
    }
    const Value l = eval(*n.kids[0], sc), r = eval(*n.kids[1], sc);
    if (op == "~") return Value::string(to_str(l) + to_str(r));
    if (op == "==") return Value::boolean(equals(l, r));
    if (op == "!=") return Value::boolean(!equals(l, r));
    if (op == "in" || op == "not in") return Value::boolean(contains(n, r, l) == (op == "in"));
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      int c;
      try {
        c = compare(l, r);
      } catch (const RenderError& e) {
        error(n, e.what());
      }
      return Value::boolean(op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0);
    }
    if (l.is_undefined() || r.is_undefined())
      error(n, fmt::format("'{}' is undefined", l.is_undefined() ? l.s : r.s));
    if (op == "+") {
      if (l.is_string() && r.is_string()) return Value::string(l.s + r.s);
      if (l.is_list() && r.is_list()) {
        List out = *l.list;
        out.insert(out.end(), r.list->begin(), r.list->end());
        return Value::of_list(std::move(out));
      }
    }
    if (op == "*" && (l.is_string() || l.is_list()) && r.kind == Value::Kind::Int) {
      Value out = l.is_string() ? Value::string("") : Value::of_list({});
      for (int64_t k = 0; k < r.i; ++k) {
        if (l.is_string()) out.s += l.s;
        else out.list->insert(out.list->end(), l.list->begin(), l.list->end());
      }
      return out;
    }
    if (op == "%" && l.is_string()) error(n, "printf-style string formatting (%) is not supported");
    if (!l.is_number() || !r.is_number())
      error(n, fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(l), type_name(r)));
    const bool ints = l.kind != Value::Kind::Float && r.kind != Value::Kind::Float;
    const int64_t a = l.kind == Value::Kind::Bool ? l.b : l.i, b = r.kind == Value::Kind::Bool ? r.b : r.i;
    const double x = l.as_double(), y = r.as_double();
    if (op == "+") return ints ? Value::integer(a + b) : Value::number(x + y);
    if (op == "-") return ints ? Value::integer(a - b) : Value::number(x - y);
    if (op == "*") return ints ? Value::integer(a * b) : Value::number(x * y);
    if ((op == "/" || op == "//" || op == "%") && y == 0) error(n, "division by zero");
    if (op == "/") return Value::number(x / y);
    if (op == "//") return ints ? Value::integer(floordiv(a, b)) : Value::number(std::floor(x / y));
    if (op == "%") return ints ? Value::integer(a - floordiv(a, b) * b) : Value::number(x - std::floor(x / y) * y);
    if (op == "**") return ints && b >= 0 ? Value::integer(int64_t(std::llround(std::pow(x, y)))) : Value::number(std::pow(x, y));
    error(n, "unknown operator " + op);
  }

  bool contains(const Node& n, const Value& container, const Value& v) {
    if (container.is_string()) {
      if (!v.is_string()) error(n, "'in <string>' requires string as left operand");
      return container.s.find(v.s) != std::string::npos;
    }
    if (container.is_dict()) return v.is_string() && container.dict->find(v.s) != nullptr;
    if (container.is_list()) {
      for (const auto& e : *container.list)
        if (equals(e, v)) return true;
      return false;
    }
    if (container.is_undefined()) error(n, fmt::format("'{}' is undefined", container.s));
    error(n, fmt::format("argument of type '{}' is not iterable", type_name(container)));
  }

  Scope& root_;
};

// Filters and tests are known when the template loads: an unknown one is refused by name.
void check_names(const Body& body);
void check_node(const NodePtr& n) {
  if (!n) return;
  if (n->kind == K::Filter && !has_filter(n->name))
    throw UnsupportedError(fmt::format("template line {}: the filter '{}' is not supported", n->line, n->name));
  if (n->kind == K::Test && !has_test(n->name))
    throw UnsupportedError(fmt::format("template line {}: the test '{}' is not supported", n->line, n->name));
  for (const auto& k : n->kids) check_node(k);
  for (const auto& d : n->defaults) check_node(d);
  for (const auto& b : n->bodies) check_names(b);
}
void check_names(const Body& body) {
  for (const auto& n : body) check_node(n);
}

}  // namespace

CompiledTemplate CompiledTemplate::parse(const std::string& source) {
  CompiledTemplate t;
  auto tpl = std::make_shared<Template>(parse_template(source));
  check_names(tpl->body);
  t.tpl_ = std::move(tpl);
  return t;
}

std::string CompiledTemplate::render(const Dict& vars) const {
  Scope globals;
  add_globals(globals.vars);
  Scope root{vars, &globals, nullptr};
  Renderer r(root);
  std::string out;
  try {
    r.body(tpl_->body, root, out);
  } catch (const BreakSignal&) {
    throw RenderError("{% break %} outside a loop");
  } catch (const ContinueSignal&) {
    throw RenderError("{% continue %} outside a loop");
  }
  return out;
}

}  // namespace ds::chat::jinja
