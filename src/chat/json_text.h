// JSON text exactly as Python's json.dumps(value, ensure_ascii=False) writes it (", " and
// ": " separators, float repr, object keys in insertion order). DeepSeek's encoder and the
// transformers `tojson` filter both produce this text, so prompts must use it byte for byte.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace ds::chat {

using Json = nlohmann::ordered_json;  // keeps key order, as Python dicts do

std::string python_json_dumps(const Json& value);
// Python's repr() of a float (shortest round-trip digits, Python's exponent rules).
std::string python_float_repr(double value);
// Python truthiness of a JSON value (what Jinja's `if x` sees).
bool python_truthy(const Json& value);
// Parses JSON text; returns false (and leaves out untouched) if it is not valid JSON.
bool try_parse_json(const std::string& text, Json& out);

}  // namespace ds::chat
