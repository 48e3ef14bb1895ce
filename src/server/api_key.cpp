#include "server/api_key.h"

#include <cctype>
#include <string_view>

namespace ds::server {
namespace {

// Comparison whose time does not depend on where the strings differ.
bool same_secret(std::string_view given, std::string_view key) {
  if (given.size() != key.size() || key.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= (unsigned char)(given[i] ^ key[i]);
  return diff == 0;
}

}  // namespace

bool bearer_matches(const HttpRequest& req, const std::string& key) {
  const std::string* auth = req.header("authorization");
  if (!auth) return false;
  // RFC 9110 section 11.4: auth-scheme (case-insensitive) 1*SP token68; trailing whitespace is not part
  // of the field value.
  std::string_view v(*auth);
  if (v.size() < 7) return false;
  std::string scheme(v.substr(0, 6));
  for (char& c : scheme) c = char(std::tolower((unsigned char)c));
  if (scheme != "bearer" || v[6] != ' ') return false;
  v.remove_prefix(6);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return same_secret(v, key);
}

}  // namespace ds::server
