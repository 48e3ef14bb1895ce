#include "server/api_error.h"

namespace ds::server {

void bad_param(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const char* error_type(int status) { return status >= 500 ? "server_error" : "invalid_request_error"; }

Json error_body(int status, const std::string& message, const std::optional<std::string>& param,
                const std::optional<std::string>& code) {
  Json err = Json::object();
  err["message"] = message;
  err["type"] = error_type(status);
  err["param"] = param ? Json(*param) : Json(nullptr);
  err["code"] = code ? Json(*code) : Json(status);
  return Json{{"error", err}};
}

HttpResponse error_response(const ApiError& e) {
  HttpResponse r;
  r.status = e.status();
  r.body = dump(error_body(e.status(), e.what(), e.param(), e.code()));
  if (e.status() == 503) r.headers.emplace_back("Retry-After", "1");
  if (e.status() == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

HttpResponse error_response(int status, const std::string& message) {
  return error_response(ApiError(status, message));
}

}  // namespace ds::server
