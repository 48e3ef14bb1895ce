// Typed reads of optional request fields. null counts as absent; a present field of the wrong type
// or out of range is a 400 that names it ("sampling_params.top_k must be an integer").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/json.h"

namespace ds::server {

// Where a field lives, for messages: "" (top level) or e.g. "sampling_params".
struct Fields {
  const Json& obj;
  std::string where;

  std::string name(const char* key) const { return where.empty() ? key : where + "." + key; }
  const Json* get(const char* key) const;  // nullptr when absent or null

  std::optional<bool> boolean(const char* key) const;
  std::optional<double> number(const char* key) const;
  // Integers (5.0 is accepted as 5, as pydantic does) within [lo, hi].
  std::optional<int64_t> integer(const char* key, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const;
  std::optional<std::string> string(const char* key) const;
  // A string or a list of strings (OpenAI's `stop`).
  std::optional<std::vector<std::string>> strings(const char* key) const;
  std::optional<std::vector<int32_t>> int_list(const char* key, int64_t lo, int64_t hi) const;
};

// The body as a JSON object: 400 "Invalid JSON ..." otherwise.
Json parse_body(const std::string& body);

}  // namespace ds::server
