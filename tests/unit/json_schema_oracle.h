// A small JSON Schema validator for the subset the grammar engine supports, written the plain way
// (walk the document against the schema): the oracle for documents drawn from schema grammars.
// Follows the engine's documented strict choices: an object with `properties` and no
// `additionalProperties` allows no other keys; `pattern` must match the whole string.
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>
#include <string>

namespace ds::grammar::testing {

using OJson = nlohmann::ordered_json;

inline bool pcre_full_match(const std::string& pattern, const std::string& s) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF, &err, &off, nullptr);
  if (!code) return false;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, nullptr);
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return rc >= 0;
}

inline size_t codepoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

inline bool validate(const OJson& schema, const OJson& doc, const OJson& root);

inline bool validate_type(const OJson& s, const std::string& t, const OJson& doc, const OJson& root) {
  if (t == "null") return doc.is_null();
  if (t == "boolean") return doc.is_boolean();
  if (t == "integer" || t == "number") {
    if (t == "integer" ? !doc.is_number_integer() : !doc.is_number()) return false;
    if (t == "integer") {
      const int64_t v = doc.is_number_unsigned() ? int64_t(doc.get<uint64_t>()) : doc.get<int64_t>();
      if (s.contains("minimum") && v < s["minimum"].get<int64_t>()) return false;
      if (s.contains("maximum") && v > s["maximum"].get<int64_t>()) return false;
      if (s.contains("exclusiveMinimum") && v <= s["exclusiveMinimum"].get<int64_t>()) return false;
      if (s.contains("exclusiveMaximum") && v >= s["exclusiveMaximum"].get<int64_t>()) return false;
    }
    return true;
  }
  if (t == "string") {
    if (!doc.is_string()) return false;
    const std::string v = doc.get<std::string>();
    if (s.contains("minLength") && codepoints(v) < s["minLength"].get<size_t>()) return false;
    if (s.contains("maxLength") && codepoints(v) > s["maxLength"].get<size_t>()) return false;
    if (s.contains("pattern") && !pcre_full_match(s["pattern"].get<std::string>(), v)) return false;
    if (s.contains("format")) {
      const std::string f = s["format"];
      const std::string date = R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))";
      const std::string time = R"(([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))";
      std::string re = f == "date" ? date : f == "time" ? time : f == "date-time" ? date + "T" + time
                     : f == "uuid" ? "[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
                     : f == "ipv4" ? R"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})"
                     : R"([^@\s"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)";
      if (!pcre_full_match(re, v)) return false;
    }
    return true;
  }
  if (t == "array") {
    if (!doc.is_array()) return false;
    if (s.contains("minItems") && doc.size() < s["minItems"].get<size_t>()) return false;
    if (s.contains("maxItems") && doc.size() > s["maxItems"].get<size_t>()) return false;
    size_t k = 0;
    if (s.contains("prefixItems"))
      for (; k < s["prefixItems"].size() && k < doc.size(); ++k)
        if (!validate(s["prefixItems"][k], doc[k], root)) return false;
    for (; k < doc.size(); ++k)
      if (s.contains("items") && !validate(s["items"], doc[k], root)) return false;
    return true;
  }
  if (t == "object") {
    if (!doc.is_object()) return false;
    const OJson props = s.value("properties", OJson::object());
    for (const auto& r : s.value("required", OJson::array()))
      if (!doc.contains(r.get<std::string>())) return false;
    for (const auto& [k, v] : doc.items()) {
      if (props.contains(k)) {
        if (!validate(props[k], v, root)) return false;
      } else if (s.contains("additionalProperties")) {
        if (!validate(s["additionalProperties"], v, root)) return false;
      } else if (!props.empty()) {
        return false;
      }
    }
    return true;
  }
  return false;
}

inline bool validate(const OJson& s, const OJson& doc, const OJson& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string r = s["$ref"];
    if (r == "#") return validate(root, doc, root);
    const auto slash = r.rfind('/');
    const std::string container = r.substr(2, slash - 2), name = r.substr(slash + 1);
    return validate(root[container][name], doc, root);
  }
  if (s.contains("enum")) {
    for (const auto& e : s["enum"])
      if (e == doc) return true;
    return false;
  }
  if (s.contains("const")) return s["const"] == doc;
  for (const char* key : {"anyOf", "oneOf"})
    if (s.contains(key)) {
      for (const auto& sub : s[key])
        if (validate(sub, doc, root)) return true;
      return false;
    }
  if (s.contains("allOf")) return validate(s["allOf"][0], doc, root);
  if (!s.contains("type")) {
    if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) return validate_type(s, "object", doc, root);
    if (s.contains("items") || s.contains("prefixItems")) return validate_type(s, "array", doc, root);
    return true;
  }
  if (s["type"].is_string()) return validate_type(s, s["type"], doc, root);
  for (const auto& t : s["type"])
    if (validate_type(s, t, doc, root)) return true;
  return false;
}

}  // namespace ds::grammar::testing
