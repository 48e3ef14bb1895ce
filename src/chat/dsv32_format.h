// DeepSeek-V3.2 prompt format (DeepSeek's encoding_dsv32.py), byte for byte. Works on
// DeepSeek-style message dicts: {role, content, reasoning_content, tool_calls, tools, ...}
// where tools may sit on a system or developer message.
#pragma once
#include <string>

#include "chat/json_text.h"

namespace ds::chat::dsv32 {

inline constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
inline constexpr const char* kEos = "<｜end▁of▁sentence｜>";
inline constexpr const char* kThinkStart = "<think>";
inline constexpr const char* kThinkEnd = "</think>";
inline constexpr const char* kDsml = "｜DSML｜";

enum class ThinkingMode { Chat, Thinking };

struct EncodeOptions {
  ThinkingMode mode = ThinkingMode::Thinking;
  bool drop_thinking = true;   // drop reasoning_content of turns before the last user turn
  bool add_bos = true;
};

// Renders `messages` (a JSON array). Throws RequestError where DeepSeek's encoder asserts.
std::string encode_messages(const Json& messages, const EncodeOptions& options);

// The "## Tools" block for a list of OpenAI tool objects ({"type","function"}).
std::string render_tools(const Json& openai_tools);

}  // namespace ds::chat::dsv32
