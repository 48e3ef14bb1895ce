// Helpers shared by the chat tests: fixture paths and file reading.
#pragma once
#include <fstream>
#include <sstream>
#include <string>

#include "chat/json_text.h"

namespace ds::chat::test {

inline std::string fixture_path(const std::string& rel) {
  return std::string(DS_SOURCE_DIR) + "/tests/fixtures/chat/" + rel;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline Json read_json(const std::string& path) { return Json::parse(read_file(path)); }

// Python's str.strip() on ASCII whitespace (what the gold test applies to the gold file).
inline std::string strip(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace ds::chat::test
