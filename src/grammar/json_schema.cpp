#include "grammar/json_schema.h"

#include <array>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>

#include "grammar/json_rules.h"
#include "grammar/regex.h"
#include "util/error.h"

namespace ds::grammar {

namespace {

using Json = nlohmann::ordered_json;

const std::set<std::string> kAnnotations = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "$defs", "definitions"};

// A JSON value as text: '<' inside strings written "\u003c" when the options ask for it.
std::string json_literal(const Json& v, const JsonGrammarOptions& opt) {
  std::string text = v.dump();
  if (!opt.escape_lt) return text;
  std::string out;
  for (char c : text) out += c == '<' ? std::string("\\u003c") : std::string(1, c);  // '<' occurs only inside strings
  return out;
}

}  // namespace

// Builds the rules of one schema document (`root`, which $refs resolve against) into `g`.
class SchemaCompiler {
 public:
  SchemaCompiler(Grammar& g, const Json& root, const JsonGrammarOptions& opt, JsonRules* shared = nullptr)
      : root_(root), g_(g), own_(shared ? std::nullopt : std::optional<JsonRules>(std::in_place, g_, opt)),
        j_(shared ? *shared : *own_), opt_(opt) {}

  // The whole document: the root rule, whitespace around the value.
  void compile_root() {
    g_.root = g_.add_rule("root", nullptr);
    ExprPtr body = seq({j_.ws(), schema(root_, "#"), j_.ws()});
    g_.rules[size_t(g_.root)].body = body;
  }

  JsonRules& json() { return j_; }

  // One value of `s` (the root or a schema inside it), no whitespace around it.
  ExprPtr schema(const Json& s, const std::string& path) {
    if (s.is_boolean()) return s.get<bool>() ? j_.value() : nothing();
    if (!s.is_object()) bad(path, "a schema must be an object or a boolean");
    return schema_object(s, path);
  }

 private:
  [[noreturn]] void bad(const std::string& path, const std::string& msg) { fail("JSON Schema at {}: {}", path, msg); }

  void check_keywords(const Json& s, const std::string& path, const std::set<std::string>& allowed) {
    for (const auto& [key, v] : s.items()) {
      if (kAnnotations.count(key) || allowed.count(key)) continue;
      bad(path, "unsupported JSON Schema keyword '" + key + "'");
    }
  }

  ExprPtr schema_object(const Json& s, const std::string& path) {
    if (s.contains("$ref")) {
      check_keywords(s, path, {"$ref"});
      return reference(s["$ref"], path);
    }
    if (s.contains("enum")) {
      check_keywords(s, path, {"enum", "type"});
      const Json& e = s["enum"];
      if (!e.is_array() || e.empty()) bad(path, "'enum' must be a non-empty array");
      std::vector<ExprPtr> alts;
      for (const Json& v : e) alts.push_back(literal(json_literal(v, opt_)));
      return alt(std::move(alts));
    }
    if (s.contains("const")) {
      check_keywords(s, path, {"const", "type"});
      return literal(json_literal(s["const"], opt_));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      check_keywords(s, path, {key});
      const Json& list = s[key];
      if (!list.is_array() || list.empty()) bad(path, std::string("'") + key + "' must be a non-empty array");
      std::vector<ExprPtr> alts;
      for (size_t i = 0; i < list.size(); ++i) alts.push_back(schema(list[i], path + "/" + key + "/" + std::to_string(i)));
      return alt(std::move(alts));
    }
    if (s.contains("allOf")) {
      check_keywords(s, path, {"allOf"});
      const Json& list = s["allOf"];
      if (!list.is_array() || list.size() != 1) bad(path, "'allOf' is supported with exactly one schema");
      return schema(list[0], path + "/allOf/0");
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      const Json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const Json& x : t) {
          if (!x.is_string()) bad(path, "'type' must be a string or an array of strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        bad(path, "'type' must be a string or an array of strings");
      }
    } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) {
      types.push_back("array");
    } else if (s.contains("pattern") || s.contains("format") || s.contains("minLength") || s.contains("maxLength")) {
      types.push_back("string");
    } else {
      check_keywords(s, path, {});
      return j_.value();
    }
    std::set<std::string> allowed{"type"};
    std::vector<ExprPtr> alts;
    for (const std::string& t : types) alts.push_back(typed(s, t, path, allowed));
    check_keywords(s, path, allowed);
    return alt(std::move(alts));
  }

  ExprPtr typed(const Json& s, const std::string& type, const std::string& path, std::set<std::string>& allowed) {
    if (type == "string") {
      allowed.insert({"minLength", "maxLength", "pattern", "format"});
      return string(s, path);
    }
    if (type == "integer") {
      allowed.insert({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"});
      return integer(s, path);
    }
    if (type == "number") {
      for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
        if (s.contains(k)) bad(path, std::string("unsupported JSON Schema keyword '") + k + "' for type number");
      return j_.number();
    }
    if (type == "boolean") return j_.boolean();
    if (type == "null") return j_.null();
    if (type == "object") {
      allowed.insert({"properties", "required", "additionalProperties"});
      return object(s, path);
    }
    if (type == "array") {
      allowed.insert({"items", "prefixItems", "minItems", "maxItems"});
      if (s.contains("uniqueItems") && s["uniqueItems"] == false) allowed.insert("uniqueItems");
      return array(s, path);
    }
    bad(path, "unknown type '" + type + "'");
  }

  int64_t int_field(const Json& s, const char* key, const std::string& path) {
    const Json& v = s[key];
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d == double(int64_t(d))) return int64_t(d);
    }
    bad(path, std::string("'") + key + "' must be an integer here");
  }

  ExprPtr integer(const Json& s, const std::string& path) {
    std::optional<int64_t> lo, hi;
    if (s.contains("minimum")) lo = int_field(s, "minimum", path);
    if (s.contains("exclusiveMinimum")) {
      int64_t v = int_field(s, "exclusiveMinimum", path) + 1;
      lo = lo ? std::max(*lo, v) : v;
    }
    if (s.contains("maximum")) hi = int_field(s, "maximum", path);
    if (s.contains("exclusiveMaximum")) {
      int64_t v = int_field(s, "exclusiveMaximum", path) - 1;
      hi = hi ? std::min(*hi, v) : v;
    }
    if (!lo && !hi) return j_.integer();
    if (lo && hi && *lo > *hi) bad(path, "the integer range is empty");
    return JsonRules::integer_range(lo, hi);
  }

  ExprPtr string(const Json& s, const std::string& path) {
    const int n = int(s.contains("pattern")) + int(s.contains("format")) + int(s.contains("minLength") || s.contains("maxLength"));
    if (n > 1) bad(path, "combining 'pattern', 'format' and 'minLength'/'maxLength' is not supported");
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) bad(path, "'pattern' must be a string");
      RegexOptions o;
      const bool escape_lt = opt_.escape_lt;
      o.char_set = [escape_lt](const CodepointRanges& set) { return JsonRules::json_chars(set, escape_lt); };
      try {
        return JsonRules::quoted(parse_regex(s["pattern"].get<std::string>(), o));
      } catch (const Error& e) {
        bad(path, std::string("'pattern': ") + e.what());
      }
    }
    if (s.contains("format")) {
      if (!s["format"].is_string()) bad(path, "'format' must be a string");
      return JsonRules::quoted(JsonRules::string_format(s["format"].get<std::string>()));
    }
    if (s.contains("minLength") || s.contains("maxLength")) {
      int lo = s.contains("minLength") ? int(int_field(s, "minLength", path)) : 0;
      int hi = s.contains("maxLength") ? int(int_field(s, "maxLength", path)) : -1;
      if (lo < 0 || (hi >= 0 && hi < lo)) bad(path, "bad 'minLength'/'maxLength'");
      if (lo > 10000 || hi > 10000) bad(path, "'minLength'/'maxLength' over 10000 is not supported");
      return JsonRules::quoted(repeat(j_.string_char(), lo, hi));
    }
    return j_.string();
  }

  ExprPtr object(const Json& s, const std::string& path) {
    const Json empty_obj = Json::object();
    const Json& props = s.contains("properties") ? s["properties"] : empty_obj;
    if (!props.is_object()) bad(path, "'properties' must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) bad(path, "'required' must be an array");
      for (const Json& r : s["required"]) {
        if (!r.is_string()) bad(path, "'required' must list strings");
        if (!props.contains(r.get<std::string>())) bad(path, "required property '" + r.get<std::string>() + "' is not in 'properties'");
        required.insert(r.get<std::string>());
      }
    }
    // Extra keys: additionalProperties, or when absent: allowed only if no properties are listed.
    ExprPtr extra;
    if (s.contains("additionalProperties")) {
      const Json& ap = s["additionalProperties"];
      if (!(ap.is_boolean() && !ap.get<bool>())) extra = seq({j_.string(), j_.colon(), schema(ap, path + "/additionalProperties")});
    } else if (props.empty()) {
      extra = seq({j_.string(), j_.colon(), j_.value()});
    }
    struct Member {
      ExprPtr expr;
      bool required;
    };
    std::vector<Member> members;
    for (const auto& [name, sub] : props.items())
      members.push_back({seq({literal(json_literal(Json(name), opt_)), j_.colon(), schema(sub, path + "/properties/" + name)}), required.count(name) > 0});
    // tail[i][after]: the members from i on, `after` = a member was already written (so a comma
    // comes first). Rules keep the size linear in the number of optional members.
    const size_t n = members.size();
    std::vector<std::array<ExprPtr, 2>> tail(n + 1);
    tail[n][1] = extra ? star(seq({j_.comma(), extra})) : empty();
    tail[n][0] = extra ? optional(seq({extra, star(seq({j_.comma(), extra}))})) : empty();
    for (size_t i = n; i-- > 0;) {
      for (int after = 0; after < 2; ++after) {
        ExprPtr with = seq({after ? j_.comma() : empty(), members[i].expr, tail[i + 1][1]});
        ExprPtr body = members[i].required ? with : alt({with, tail[i + 1][after]});
        tail[i][after] = members[i].required ? body : ref(g_.add_rule("object_tail", body));
      }
    }
    return seq({literal("{"), j_.ws(), tail[0][0], j_.ws(), literal("}")});
  }

  ExprPtr array(const Json& s, const std::string& path) {
    const int lo = s.contains("minItems") ? int(int_field(s, "minItems", path)) : 0;
    const int hi = s.contains("maxItems") ? int(int_field(s, "maxItems", path)) : -1;
    if (lo < 0 || (hi >= 0 && hi < lo)) bad(path, "bad 'minItems'/'maxItems'");
    if (lo > 10000 || hi > 10000) bad(path, "'minItems'/'maxItems' over 10000 is not supported");
    std::vector<ExprPtr> prefix;
    if (s.contains("prefixItems")) {
      const Json& p = s["prefixItems"];
      if (!p.is_array()) bad(path, "'prefixItems' must be an array");
      for (size_t i = 0; i < p.size(); ++i) prefix.push_back(schema(p[i], path + "/prefixItems/" + std::to_string(i)));
    }
    ExprPtr item = s.contains("items") ? schema(s["items"], path + "/items") : j_.value();
    const bool no_more = s.contains("items") && s["items"].is_boolean() && !s["items"].get<bool>();
    // Items after the prefix: count in [max(lo - k, 0), hi - k].
    const int k = int(prefix.size());
    if (hi >= 0 && hi < k) prefix.resize(size_t(hi));
    const int rest_lo = std::max(lo - k, 0);
    const int rest_hi = no_more ? 0 : hi < 0 ? -1 : std::max(hi - k, 0);
    if (no_more && lo > k) bad(path, "'minItems' exceeds the number of 'prefixItems' with items: false");
    // Written back to front: each element carries the separator before it; `after` = not first.
    auto rest = [&](bool after) -> ExprPtr {
      if (rest_hi == 0) return empty();
      ExprPtr sep_item = seq({j_.comma(), item});
      if (after) return repeat(sep_item, rest_lo, rest_hi);
      ExprPtr some = seq({item, repeat(sep_item, std::max(rest_lo - 1, 0), rest_hi < 0 ? -1 : rest_hi - 1)});
      return rest_lo > 0 ? some : optional(some);
    };
    ExprPtr body = rest(!prefix.empty());
    for (size_t i = prefix.size(); i-- > 0;) {
      ExprPtr elem = seq({i > 0 ? j_.comma() : empty(), prefix[i], body});
      body = int(i) < lo ? elem : optional(elem);
    }
    return seq({literal("["), j_.ws(), body, j_.ws(), literal("]")});
  }

  ExprPtr reference(const Json& ref_value, const std::string& path) {
    if (!ref_value.is_string()) bad(path, "'$ref' must be a string");
    const std::string r = ref_value.get<std::string>();
    auto it = refs_.find(r);
    if (it != refs_.end()) return ref(it->second);
    const Json* target = nullptr;
    if (r == "#") {
      target = &root_;
    } else {
      for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
        const std::string p = prefix;
        if (r.rfind(p, 0) != 0) continue;
        const std::string container = p.substr(2, p.size() - 3), name = r.substr(p.size());
        if (root_.contains(container) && root_[container].is_object() && root_[container].contains(name))
          target = &root_[container][name];
      }
    }
    if (!target) bad(path, "'$ref' to '" + r + "' is not supported or not found (only #, #/$defs/NAME, #/definitions/NAME)");
    const int id = g_.add_rule("ref", nullptr);
    refs_[r] = id;
    ExprPtr body = schema(*target, r);
    g_.rules[size_t(id)].body = body;
    return ref(id);
  }

  const Json& root_;
  Grammar& g_;
  std::optional<JsonRules> own_;  // unless the caller shares its own
  JsonRules& j_;
  JsonGrammarOptions opt_;
  std::map<std::string, int> refs_;
};

SchemaValues::SchemaValues(Grammar& g, const nlohmann::ordered_json& root, const JsonGrammarOptions& options,
                           JsonRules* shared)
    : impl_(std::make_unique<SchemaCompiler>(g, root, options, shared)) {}
SchemaValues::~SchemaValues() = default;
ExprPtr SchemaValues::value(const nlohmann::ordered_json& schema, const std::string& path) {
  return impl_->schema(schema, path);
}
JsonRules& SchemaValues::json() { return impl_->json(); }

Grammar json_schema_grammar(std::string_view schema_json, const JsonGrammarOptions& options) {
  Json schema;
  try {
    schema = Json::parse(schema_json);
  } catch (const nlohmann::json::exception& e) {
    fail("JSON Schema is not valid JSON: {}", e.what());
  }
  Grammar g;
  SchemaCompiler(g, schema, options).compile_root();
  return g;
}

Grammar json_object_grammar(const JsonGrammarOptions& options) {
  Grammar g;
  JsonRules j(g, options);
  g.root = g.add_rule("root", nullptr);
  ExprPtr body = seq({j.ws(), j.any_object(), j.ws()});
  g.rules[size_t(g.root)].body = body;
  return g;
}

Grammar json_value_grammar(const JsonGrammarOptions& options) {
  Grammar g;
  JsonRules j(g, options);
  g.root = g.add_rule("root", nullptr);
  ExprPtr body = seq({j.ws(), j.value(), j.ws()});
  g.rules[size_t(g.root)].body = body;
  return g;
}

}  // namespace ds::grammar
