// How a request's body is delimited (RFC 9112 section 6): the checks that keep a request from being
// read one way here and another way by a proxy in front of us (request smuggling).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ds::server {

struct FramingError {
  int status;           // 400 or 501; the connection is closed after the answer
  std::string message;
};

// `transfer_encodings`: the values of every Transfer-Encoding field line, in order. A request with a
// Transfer-Encoding is refused when it also has a Content-Length (400), when chunked is not its final
// coding or appears twice (400: its length cannot be known), or when it names any other coding (501:
// we decode none). nullopt: the framing is fine.
std::optional<FramingError> check_request_framing(const std::vector<std::string_view>& transfer_encodings,
                                                  bool has_content_length);

}  // namespace ds::server
