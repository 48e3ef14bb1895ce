// JSON for API bodies: ordered objects (fields go out in the order OpenAI documents them), and a
// dump that never throws on invalid UTF-8 (a client's bytes may end up in an error message).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace ds::server {

using Json = nlohmann::ordered_json;

inline std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace ds::server
