#include "chat/output_types.h"

#include <random>

namespace ds::chat {

void accumulate(ParsedMessage& message, const ParsedDelta& delta) {
  message.reasoning_content += delta.reasoning_content;
  message.content += delta.content;
  for (const auto& d : delta.tool_calls) {
    if (d.index >= static_cast<int>(message.tool_calls.size()))
      message.tool_calls.resize(d.index + 1);
    auto& call = message.tool_calls[d.index];
    if (d.id) call.id = *d.id;
    if (d.name) call.name = *d.name;
    call.arguments += d.arguments;
  }
}

std::string make_tool_call_id() {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pick(0, sizeof(kAlphabet) - 2);
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[pick(rng)];
  return id;
}

}  // namespace ds::chat
