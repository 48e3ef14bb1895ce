// Errors of the chat layer. RequestError means the client sent something we cannot encode
// (the HTTP layer maps it to 400); its message names the offending field.
#pragma once
#include <fmt/format.h>

#include <string>

#include "util/error.h"

namespace ds::chat {

class RequestError : public ds::Error {
 public:
  explicit RequestError(const std::string& msg) : ds::Error(msg) {}
};

template <typename... Args>
[[noreturn]] void bad_request(fmt::format_string<Args...> f, Args&&... args) {
  throw RequestError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ds::chat
