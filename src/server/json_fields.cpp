#include "server/json_fields.h"

#include <cmath>

#include "server/api_error.h"

namespace ds::server {

const Json* Fields::get(const char* key) const {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<bool> Fields::boolean(const char* key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad_param(name(key), name(key) + " must be a boolean");
  return v->get<bool>();
}

std::optional<double> Fields::number(const char* key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_param(name(key), name(key) + " must be a number");
  double d = v->get<double>();
  if (!std::isfinite(d)) bad_param(name(key), name(key) + " must be finite");
  return d;
}

std::optional<int64_t> Fields::integer(const char* key, int64_t lo, int64_t hi) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)) x = INT64_MAX;
    else x = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             std::floor(v->get<double>()) == v->get<double>() && std::fabs(v->get<double>()) < 9e18) {
    x = int64_t(v->get<double>());
  } else {
    bad_param(name(key), name(key) + " must be an integer");
  }
  if (x < lo || x > hi) {
    std::string range = hi == INT64_MAX ? fmt::format(">= {}", lo) : fmt::format("in [{}, {}]", lo, hi);
    bad_param(name(key), fmt::format("{} must be {}, got {}", name(key), range, x));
  }
  return x;
}

std::optional<std::string> Fields::string(const char* key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad_param(name(key), name(key) + " must be a string");
  return v->get<std::string>();
}

std::optional<std::vector<std::string>> Fields::strings(const char* key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (v->is_string()) return std::vector<std::string>{v->get<std::string>()};
  if (!v->is_array()) bad_param(name(key), name(key) + " must be a string or a list of strings");
  std::vector<std::string> out;
  for (const auto& s : *v) {
    if (!s.is_string()) bad_param(name(key), name(key) + " must be a string or a list of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

std::optional<std::vector<int32_t>> Fields::int_list(const char* key, int64_t lo, int64_t hi) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (!v->is_array()) bad_param(name(key), name(key) + " must be a list of integers");
  std::vector<int32_t> out;
  for (const auto& x : *v) {
    if (!x.is_number_integer()) bad_param(name(key), name(key) + " must be a list of integers");
    int64_t i = x.is_number_unsigned() && x.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : x.get<int64_t>();
    if (i < lo || i > hi) bad_param(name(key), fmt::format("{} holds {}, outside [{}, {}]", name(key), i, lo, hi));
    out.push_back(int32_t(i));
  }
  return out;
}

Json parse_body(const std::string& body) {
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::parse_error& e) {
    throw ApiError(400, fmt::format("Invalid JSON in the request body: {}", e.what()));
  }
  if (!j.is_object()) throw ApiError(400, "The request body must be a JSON object");
  return j;
}

}  // namespace ds::server
