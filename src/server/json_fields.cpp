#include "server/json_fields.h"

#include <cmath>
#include <limits>

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
  // Every such parameter is used as a float: a larger magnitude would silently become infinite.
  if (std::fabs(d) > double(std::numeric_limits<float>::max()))
    bad_param(name(key), fmt::format("{} is out of range: {}", name(key), d));
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

namespace {

// Where the parser is in the document ("sampling_params.temperature", "input_ids[3]"), kept up to date
// through the parser's callback so a parse error can name the field it happened in.
class JsonPath {
 public:
  bool on_event(Json::parse_event_t ev, const Json& parsed) {
    using E = Json::parse_event_t;
    switch (ev) {
      case E::object_start: stack_.push_back({false, {}, 0}); break;
      case E::array_start: stack_.push_back({true, {}, 0}); break;
      case E::key:
        if (!stack_.empty() && parsed.is_string()) stack_.back().key = parsed.get<std::string>();
        break;
      case E::object_end:
      case E::array_end:
        if (!stack_.empty()) stack_.pop_back();
        [[fallthrough]];
      case E::value:
        if (!stack_.empty() && stack_.back().array) ++stack_.back().index;
        break;
    }
    return true;
  }
  std::string str() const {
    std::string out;
    for (const auto& f : stack_) {
      if (f.array) out += fmt::format("[{}]", f.index);
      else if (!f.key.empty()) out += (out.empty() ? "" : ".") + f.key;
    }
    return out;
  }

 private:
  struct Frame {
    bool array;
    std::string key;
    size_t index;
  };
  std::vector<Frame> stack_;
};

}  // namespace

Json parse_body(const std::string& body) {
  JsonPath path;
  Json j;
  try {
    j = Json::parse(body, [&path](int, Json::parse_event_t ev, Json& parsed) { return path.on_event(ev, parsed); });
  } catch (const Json::exception& e) {  // syntax errors, and numbers beyond a double (1e400)
    const std::string where = path.str();
    std::string what = e.what();
    if (e.id == 406) what = "a number is out of range (" + what + ")";
    if (where.empty()) throw ApiError(400, fmt::format("Invalid JSON in the request body: {}", what));
    throw ApiError(400, fmt::format("Invalid JSON in the request body at {}: {}", where, what), where);
  }
  if (!j.is_object()) throw ApiError(400, "The request body must be a JSON object");
  return j;
}

}  // namespace ds::server
