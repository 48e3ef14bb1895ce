// The API key check shared by `dsserve serve` and `dsserve router`: "Authorization: Bearer <key>".
#pragma once
#include <string>

#include "server/http_types.h"

namespace ds::server {

// True when the request carries `Authorization: Bearer <key>` (scheme case-insensitive, compared in
// time that does not depend on where the keys differ). An empty key never matches.
bool bearer_matches(const HttpRequest& request, const std::string& key);

}  // namespace ds::server
