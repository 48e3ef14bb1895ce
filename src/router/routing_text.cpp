#include "router/routing_text.h"

#include <nlohmann/json.hpp>

namespace ds::router {
namespace {

using Json = nlohmann::json;

// A string, the text parts of a content array, or token ids: appended in order.
void append_content(const Json& c, std::string& out) {
  if (c.is_string()) {
    out += c.get<std::string>();
  } else if (c.is_array()) {
    for (const auto& part : c) {
      if (part.is_object()) {
        for (const char* key : {"text", "content"})
          if (auto it = part.find(key); it != part.end()) append_content(*it, out);
      } else if (part.is_number_integer()) {
        out += std::to_string(part.get<long long>()) + " ";
      } else {
        append_content(part, out);
      }
    }
  }
}

// Chat messages or Responses input items: role and content of each, one after the other, so that
// a conversation that grows keeps its earlier turns as a prefix.
void append_messages(const Json& messages, std::string& out) {
  for (const auto& m : messages) {
    if (!m.is_object()) {
      append_content(m, out);
      continue;
    }
    if (auto r = m.find("role"); r != m.end() && r->is_string()) out += r->get<std::string>() + ": ";
    if (auto c = m.find("content"); c != m.end()) append_content(*c, out);
    out += "\n";
  }
}

}  // namespace

std::string routing_text(std::string_view path, std::string_view body) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  std::string out;
  try {
    if (path == "/v1/chat/completions") {
      if (auto it = j.find("messages"); it != j.end() && it->is_array()) append_messages(*it, out);
    } else if (path == "/v1/completions") {
      if (auto it = j.find("prompt"); it != j.end()) append_content(*it, out);
    } else if (path == "/generate") {
      if (auto it = j.find("text"); it != j.end()) append_content(*it, out);
      else if (auto ids = j.find("input_ids"); ids != j.end()) append_content(*ids, out);
    } else if (path == "/v1/responses") {
      if (auto it = j.find("instructions"); it != j.end() && it->is_string()) out += it->get<std::string>() + "\n";
      if (auto it = j.find("input"); it != j.end()) {
        if (it->is_array()) append_messages(*it, out);
        else append_content(*it, out);
      }
    }
  } catch (const Json::exception&) {
    // A shape we did not expect: route by what we have.
  }
  return out;
}

}  // namespace ds::router
