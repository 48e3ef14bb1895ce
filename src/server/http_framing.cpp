#include "server/http_framing.h"

#include <fmt/format.h>

namespace ds::server {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

}  // namespace

std::optional<FramingError> check_request_framing(const std::vector<std::string_view>& transfer_encodings,
                                                  bool has_content_length) {
  if (transfer_encodings.empty()) return std::nullopt;
  if (has_content_length)
    return FramingError{400, "a request must not have both Transfer-Encoding and Content-Length"};
  // The codings in the order they were applied: every field line, comma-separated, parameters dropped.
  std::vector<std::string> codings;
  for (std::string_view line : transfer_encodings) {
    size_t pos = 0;
    while (pos <= line.size()) {
      size_t end = line.find(',', pos);
      if (end == std::string_view::npos) end = line.size();
      std::string_view item = line.substr(pos, end - pos);
      item = trim(item.substr(0, item.find(';')));
      if (!item.empty()) codings.push_back(lower(item));
      pos = end + 1;
    }
  }
  if (codings.empty() || codings.back() != "chunked")
    return FramingError{400, "Transfer-Encoding must end in chunked: the length of this request cannot be known"};
  for (size_t i = 0; i + 1 < codings.size(); ++i) {
    if (codings[i] == "chunked") return FramingError{400, "Transfer-Encoding applies chunked more than once"};
    return FramingError{501, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)", codings[i])};
  }
  return std::nullopt;
}

}  // namespace ds::server
