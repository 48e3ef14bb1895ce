// API errors: the OpenAI error object {"error": {"message", "type", "param", "code"}} with the HTTP
// status OpenAI / SGLang use (400 bad request, 401 bad API key, 404 unknown model or path, 405,
// 413 body too large, 422 unprocessable, 500, 503 overloaded with Retry-After).
#pragma once
#include <fmt/format.h>

#include <optional>
#include <string>

#include "server/http_types.h"
#include "server/json.h"
#include "util/error.h"

namespace ds::server {

class ApiError : public ds::Error {
 public:
  ApiError(int status, std::string message, std::optional<std::string> param = std::nullopt,
           std::optional<std::string> code = std::nullopt)
      : ds::Error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::optional<std::string>& param() const { return param_; }
  const std::optional<std::string>& code() const { return code_; }

 private:
  int status_;
  std::optional<std::string> param_, code_;
};

// 400 naming the offending field: bad_param("temperature", "temperature must be >= 0, got -1").
[[noreturn]] void bad_param(const std::string& param, const std::string& message);
template <typename... Args>
[[noreturn]] void bad_request(fmt::format_string<Args...> f, Args&&... args) {
  throw ApiError(400, fmt::format(f, std::forward<Args>(args)...));
}

// "invalid_request_error" for 4xx, "server_error" for 5xx (OpenAI's types).
const char* error_type(int status);
// The error object; `code` defaults to the status as a number (as SGLang sends it).
Json error_body(int status, const std::string& message, const std::optional<std::string>& param = std::nullopt,
                const std::optional<std::string>& code = std::nullopt);
HttpResponse error_response(const ApiError& e);
HttpResponse error_response(int status, const std::string& message);

}  // namespace ds::server
