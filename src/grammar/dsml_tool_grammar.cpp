#include "grammar/dsml_tool_grammar.h"

#include <array>
#include <map>
#include <set>

#include "grammar/json_rules.h"
#include "grammar/json_schema.h"
#include "util/error.h"

namespace ds::grammar {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kBlockOpen = "\n\n<｜DSML｜function_calls>\n";
constexpr std::string_view kBlockClose = "\n</｜DSML｜function_calls>";
constexpr std::string_view kInvokeClose = "\n</｜DSML｜invoke>";
constexpr std::string_view kParamClose = "</｜DSML｜parameter>";

// Keywords of a `parameters` schema that the parameter form writes itself; the rest of the
// top-level keywords are annotations, or send the schema to the JSON-object form.
const std::set<std::string> kObjectKeys = {"type", "properties", "required", "additionalProperties"};
const std::set<std::string> kAnnotations = {"title", "description", "default", "examples", "$schema", "$id",
                                            "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"};

std::string param_open(const std::string& name, bool raw) {
  return "<｜DSML｜parameter name=\"" + name + "\" string=\"" + (raw ? "true" : "false") + "\">";
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Raw text the tool parser reads back unchanged: no "</" (it ends the value) and no whitespace at
// either end (stripped).
bool raw_safe(const std::string& s) {
  return s.find("</") == std::string::npos && (s.empty() || (!is_space(s.front()) && !is_space(s.back())));
}

// Any raw text without "</": characters other than '<', or runs of '<' followed by one that is
// neither '<' nor '/'.
ExprPtr raw_text() {
  ExprPtr not_lt = utf8_class(complement({{'<', '<'}}));
  ExprPtr after_lt = utf8_class(complement({{'/', '/'}, {'<', '<'}}));
  return star(alt({not_lt, seq({plus(literal("<")), after_lt})}));
}

// Raw text of [lo, hi] characters (hi < 0: unbounded) that the parser's strip leaves alone: no
// '<' at all, no whitespace at either end.
ExprPtr bounded_raw_text(int lo, int hi) {
  ExprPtr inner = utf8_class(complement({{'<', '<'}}));
  ExprPtr edge = utf8_class(complement({{'\t', '\r'}, {' ', ' '}, {'<', '<'}}));
  std::vector<ExprPtr> alts;
  if (lo == 0) alts.push_back(empty());
  if (lo <= 1 && hi != 0) alts.push_back(edge);
  if (hi < 0 || hi >= 2) alts.push_back(seq({edge, repeat(inner, std::max(lo - 2, 0), hi < 0 ? -1 : hi - 2), edge}));
  return alt(std::move(alts));
}

// Free text before an optional call block (tool_choice "auto"): any bytes that never open a block,
// i.e. hold neither "<｜DSML｜function_calls>" nor "<function_calls>" (the tool parser opens a block
// at either; only the block of this grammar may follow). After each '<' comes a proper prefix of
// the rest of an opener, then either another '<', the end, or a byte that leaves both openers.
// The prefixes are walked as a trie (the rests share no first byte), so the size stays linear.
ExprPtr text_without_block_opener() {
  const std::vector<std::string> rests = {"｜DSML｜function_calls>", "function_calls>"};  // after '<'
  // From the point where `done` bytes of the rests in `live` are read: stop (a proper prefix) or
  // read one more byte that keeps to some rest (never completing it); with `leave`, instead of
  // stopping, read a byte that is neither '<' nor the next byte of a live rest.
  auto walk = [&](auto&& self, const std::vector<const std::string*>& live, size_t done, bool leave) -> ExprPtr {
    std::vector<ExprPtr> alts;
    ByteSet out;
    out.set();
    out.reset('<');
    std::map<uint8_t, std::vector<const std::string*>> next;
    for (const std::string* r : live) {
      out.reset(uint8_t((*r)[done]));
      if (done + 1 < r->size()) next[uint8_t((*r)[done])].push_back(r);
    }
    alts.push_back(leave ? byte_set(out) : empty());
    for (const auto& [byte, rs] : next) alts.push_back(seq({byte_range(byte, byte), self(self, rs, done + 1, leave)}));
    return alt(std::move(alts));
  };
  std::vector<const std::string*> all;
  for (const std::string& r : rests) all.push_back(&r);
  ByteSet not_lt;
  not_lt.set();
  not_lt.reset('<');
  const ExprPtr lt_prefix = seq({literal("<"), walk(walk, all, 0, false)});
  const ExprPtr escape = seq({star(lt_prefix), literal("<"), walk(walk, all, 0, true)});
  return seq({star(alt({byte_set(not_lt), escape})), optional(plus(lt_prefix))});
}

// How a property's value is written.
struct ParamValue {
  bool raw = false;
  ExprPtr expr;
};

class ToolGrammarBuilder {
 public:
  ExprPtr invoke(const std::string& name, const Json* params) {
    ExprPtr body;
    if (!params || (params->is_boolean() && params->get<bool>())) {
      body = free_params();
    } else if (object_form(*params)) {
      body = param_list(*params);
    } else {
      // One JSON object inside the invoke (its own JSON text, whitespace around it read by the parser).
      SchemaValues sv(g_, *params, json_options(), &json_);
      body = sv.value(*params, "parameters");
    }
    return seq({literal("<｜DSML｜invoke name=\"" + name + "\">\n"), body, literal(kInvokeClose)});
  }

  Grammar& grammar() { return g_; }
  // Rules from index `count` on were dropped: forget the shared ones among them.
  void forget_rules_from(size_t count) {
    json_.forget_rules_from(int(count));
    if (raw_rule_ >= int(count)) raw_rule_ = -1;
    for (auto it = bounded_rules_.begin(); it != bounded_rules_.end();)
      it = it->second >= int(count) ? bounded_rules_.erase(it) : std::next(it);
  }

 private:
  // Raw text as one rule per grammar (per length bound): its automaton nodes, and so their token
  // sets (a near-full walk of the vocabulary each), exist once, not once per string parameter; the
  // node-set cache also shares them between grammars.
  ExprPtr raw() {
    if (raw_rule_ < 0) raw_rule_ = g_.add_rule("dsml_raw", raw_text());
    return ref(raw_rule_);
  }
  ExprPtr bounded_raw(int lo, int hi) {
    auto [it, fresh] = bounded_rules_.try_emplace({lo, hi}, -1);
    if (fresh) it->second = g_.add_rule("dsml_raw_bounded", bounded_raw_text(lo, hi));
    return ref(it->second);
  }

  static JsonGrammarOptions json_options() {
    JsonGrammarOptions o;
    o.escape_lt = true;
    return o;
  }

  // An object schema with its properties at the top (nothing that needs the JSON form).
  static bool object_form(const Json& s) {
    if (!s.is_object()) return false;
    if (s.contains("type") && s["type"] != "object") return false;
    for (const auto& [key, v] : s.items())
      if (!kObjectKeys.count(key) && !kAnnotations.count(key)) return false;
    return !s.contains("properties") || s["properties"].is_object();
  }

  // A free parameter: any name, a raw string or any JSON value.
  ExprPtr free_param(SchemaValues& sv) {
    ExprPtr name = plus(utf8_class(complement({{0, 0x1F}, {'"', '"'}, {'<', '<'}, {'>', '>'}})));
    return seq({literal("<｜DSML｜parameter name=\""), name, literal("\" string=\""),
                alt({seq({literal("true\">"), raw()}), seq({literal("false\">"), sv.json().value()})}),
                literal(kParamClose)});
  }

  ExprPtr free_params() {
    Json none = Json::object();
    SchemaValues sv(g_, none, json_options(), &json_);
    ExprPtr p = free_param(sv);
    return optional(seq({p, star(seq({literal("\n"), p}))}));
  }

  ParamValue value(SchemaValues& sv, const Json& s, const std::string& path) {
    if (s.is_object()) {
      bool only_annotations = true;  // besides "type": "string" and the keywords checked below
      for (const auto& [key, v] : s.items())
        if (!kAnnotations.count(key) && key != "type" && key != "format" && key != "enum" && key != "const" &&
            key != "minLength" && key != "maxLength")
          only_annotations = false;
      const bool string_type = s.contains("type") && s["type"] == "string";
      const bool length = s.contains("minLength") || s.contains("maxLength");
      const int n_kinds = int(s.contains("enum") || s.contains("const")) + int(s.contains("format")) + int(length);
      if (only_annotations && string_type && n_kinds == 0) return {true, raw()};
      if (only_annotations && string_type && n_kinds == 1 && s.contains("format") && s["format"].is_string())
        return {true, JsonRules::string_format(s["format"].get<std::string>())};
      if (only_annotations && string_type && n_kinds == 1 && length) {
        auto bound = [&](const char* k, int dflt) {
          return s.contains(k) && s[k].is_number_integer() ? s[k].get<int64_t>() : int64_t(dflt);
        };
        const int64_t lo = bound("minLength", 0), hi = bound("maxLength", -1);
        if (lo >= 0 && lo <= 10000 && hi <= 10000 && (hi < 0 || hi >= lo)) return {true, bounded_raw(int(lo), int(hi))};
      }
      // An enum / const of strings: each raw, when the parser gives it back unchanged.
      if (only_annotations && n_kinds == 1 && (s.contains("enum") || s.contains("const")) &&
          (!s.contains("type") || string_type)) {
        const Json values = s.contains("enum") ? s["enum"] : Json::array({s["const"]});
        bool all_raw = values.is_array() && !values.empty();
        std::vector<ExprPtr> alts;
        for (const Json& v : values) {
          all_raw = all_raw && v.is_string() && raw_safe(v.get<std::string>());
          if (all_raw) alts.push_back(literal(v.get<std::string>()));
        }
        if (all_raw) return {true, alt(std::move(alts))};
      }
    }
    return {false, sv.value(s, path)};
  }

  // <parameter> elements per `properties`, separated by newlines (none: the invoke's body is empty).
  ExprPtr param_list(const Json& s) {
    SchemaValues sv(g_, s, json_options(), &json_);
    const Json empty_obj = Json::object();
    const Json& props = s.contains("properties") ? s["properties"] : empty_obj;
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) fail("JSON Schema at parameters: 'required' must be an array");
      for (const Json& r : s["required"]) {
        if (!r.is_string() || !props.contains(r.get<std::string>()))
          fail("JSON Schema at parameters: required property {} is not in 'properties'", r.dump());
        required.insert(r.get<std::string>());
      }
    }
    ExprPtr extra;
    if (s.contains("additionalProperties")) {
      const Json& ap = s["additionalProperties"];
      if (ap.is_boolean() ? ap.get<bool>() : ap.empty()) {
        extra = free_param(sv);
      } else if (!ap.is_boolean()) {
        ExprPtr name = plus(utf8_class(complement({{0, 0x1F}, {'"', '"'}, {'<', '<'}, {'>', '>'}})));
        ParamValue v = value(sv, ap, "parameters/additionalProperties");
        extra = seq({literal("<｜DSML｜parameter name=\""), name, literal(std::string("\" string=\"") + (v.raw ? "true" : "false") + "\">"),
                     v.expr, literal(kParamClose)});
      }
    } else if (props.empty()) {
      extra = free_param(sv);
    }
    struct Member {
      ExprPtr expr;
      bool required;
    };
    std::vector<Member> members;
    for (const auto& [name, sub] : props.items()) {
      if (name.find('"') != std::string::npos) fail("JSON Schema at parameters: property name {} holds '\"'", Json(name).dump());
      ParamValue v = value(sv, sub, "parameters/properties/" + name);
      members.push_back({seq({literal(param_open(name, v.raw)), v.expr, literal(kParamClose)}), required.count(name) > 0});
    }
    // As in an object of json_schema.cpp: tail[i][after] are the members from i on, `after` = one
    // was written already (so a separator comes first); rules keep the size linear.
    const ExprPtr sep = literal("\n");
    const size_t n = members.size();
    std::vector<std::array<ExprPtr, 2>> tail(n + 1);
    tail[n][1] = extra ? star(seq({sep, extra})) : empty();
    tail[n][0] = extra ? optional(seq({extra, star(seq({sep, extra}))})) : empty();
    for (size_t i = n; i-- > 0;) {
      for (int after = 0; after < 2; ++after) {
        ExprPtr with = seq({after ? sep : empty(), members[i].expr, tail[i + 1][1]});
        ExprPtr body = members[i].required ? with : alt({with, tail[i + 1][after]});
        tail[i][after] = members[i].required ? body : ref(g_.add_rule("dsml_params", body));
      }
    }
    return tail[0][0];
  }

  Grammar g_;
  JsonRules json_{g_, json_options()};  // one set of JSON string / number / value rules for all tools
  int raw_rule_ = -1;
  std::map<std::pair<int, int>, int> bounded_rules_;
};

// Drops the rules added since the grammar had `count` (a tool whose schema failed half way).
void truncate_rules(Grammar& g, size_t count) {
  for (size_t i = count; i < g.rules.size(); ++i) g.names.erase(g.rules[i].name);
  g.rules.resize(count);
}

}  // namespace

Grammar dsml_tool_calls_grammar(std::string_view spec_json) {
  Json spec;
  try {
    spec = Json::parse(spec_json);
  } catch (const nlohmann::json::exception& e) {
    fail("tool-call grammar spec is not valid JSON: {}", e.what());
  }
  if (!spec.is_object() || !spec.contains("tools") || !spec["tools"].is_array() || spec["tools"].empty())
    fail("tool-call grammar: no tools");
  ToolGrammarBuilder b;
  Grammar& g = b.grammar();
  g.root = g.add_rule("root", nullptr);
  std::vector<ExprPtr> invokes;
  for (const Json& t : spec["tools"]) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) fail("tool-call grammar: a tool without a name");
    const std::string name = t["name"].get<std::string>();
    if (name.empty() || name.find('"') != std::string::npos) fail("tool-call grammar: bad tool name {}", Json(name).dump());
    const Json* params = t.contains("parameters") && !t["parameters"].is_null() ? &t["parameters"] : nullptr;
    const size_t mark = g.rules.size();
    try {
      invokes.push_back(b.invoke(name, params));
    } catch (const Error& e) {
      if (t.value("strict", false)) fail("tool '{}': {}", name, e.what());
      truncate_rules(g, mark);
      b.forget_rules_from(mark);
      invokes.push_back(b.invoke(name, nullptr));  // not strict: its arguments stay free
    }
  }
  ExprPtr invoke = ref(g.add_rule("dsml_invoke", alt(std::move(invokes))));
  const bool parallel = spec.value("parallel", true);
  ExprPtr calls = parallel ? seq({invoke, star(seq({literal("\n"), invoke}))}) : invoke;
  if (!spec.value("optional", false)) {
    g.rules[size_t(g.root)].body = seq({literal(kBlockOpen), calls, literal(kBlockClose)});
    return std::move(g);
  }
  // Text, then maybe the block. The text is its own rule without calls: its per-node token sets
  // are the same for any tools (computed once per process, NodeTokensCache), and only tokens that
  // would complete an opener leave it (to be checked against the stack: the block's own opener).
  const int text = g.add_rule("dsml_text", text_without_block_opener());
  g.rules[size_t(g.root)].body = seq({ref(text), optional(seq({literal(kBlockOpen), calls, literal(kBlockClose)}))});
  return std::move(g);
}

}  // namespace ds::grammar
