#include "chat/dsv32_format.h"

#include <vector>

#include "chat/errors.h"

namespace ds::chat::dsv32 {
namespace {

// The text of the tools section, split around the tool schemas (blank lines matter).
constexpr const char* kToolsHead =
    "## Tools\n\n"
    "You have access to a set of tools you can use to answer the user's question.\n"
    "You can invoke functions by writing a \"<｜DSML｜function_calls>\" block like the following "
    "as part of your reply to the user:\n"
    "<｜DSML｜function_calls>\n"
    "<｜DSML｜invoke name=\"$FUNCTION_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$FUNCTION_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜function_calls>\n\n"
    "String and scalar parameters should be specified as is without any escaping or quotes, while "
    "lists and objects should use JSON format. The \"string\" attribute should be set to \"true\" "
    "for string type parameters and \"false\" for other types (numbers, booleans, arrays, "
    "objects).\n\n"
    "If the thinking_mode is enabled, then after function results you should strongly consider "
    "outputting a thinking block. Here is an example:\n\n"
    "<｜DSML｜function_calls>\n...\n</｜DSML｜function_calls>\n\n"
    "<function_results>\n...\n</function_results>\n\n"
    "<think>...thinking about results</think>\n\n"
    "Here are the functions available in JSONSchema format:\n"
    "<functions>\n";
constexpr const char* kToolsTail = "\n</functions>\n";
constexpr const char* kResponseFormatHead =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

std::string str_field(const Json& msg, const char* key, size_t index) {
  auto it = msg.find(key);
  if (it == msg.end() || it->is_null()) return "";
  if (!it->is_string()) bad_request("messages[{}].{} must be a string", index, key);
  return it->get<std::string>();
}

bool has_truthy(const Json& msg, const char* key) {
  auto it = msg.find(key);
  return it != msg.end() && python_truthy(*it);
}

std::string role_of(const Json& msg) {
  auto it = msg.find("role");
  return (it != msg.end() && it->is_string()) ? it->get<std::string>() : "";
}

long last_user_index(const Json& messages) {
  for (long i = static_cast<long>(messages.size()) - 1; i >= 0; --i) {
    std::string r = role_of(messages[i]);
    if (r == "user" || r == "developer") return i;
  }
  return -1;
}

// One DSML parameter line per argument: strings raw, everything else as JSON.
std::string encode_arguments(const Json& call, size_t index) {
  const Json& fn = call.at("function");
  Json args;
  const Json& raw = fn.contains("arguments") ? fn["arguments"] : Json();
  if (raw.is_string()) {
    if (!try_parse_json(raw.get<std::string>(), args))
      bad_request("messages[{}]: tool call arguments are not valid JSON", index);
  } else {
    args = raw;
  }
  if (!args.is_object()) bad_request("messages[{}]: tool call arguments must be a JSON object", index);
  std::string out;
  bool first = true;
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (!first) out += "\n";
    first = false;
    bool is_str = it.value().is_string();
    out += std::string("<") + kDsml + "parameter name=\"" + it.key() + "\" string=\"" +
           (is_str ? "true" : "false") + "\">" +
           (is_str ? it.value().get<std::string>() : python_json_dumps(it.value())) + "</" +
           kDsml + "parameter>";
  }
  return out;
}

std::string render_tool_calls(const Json& calls, size_t index) {
  if (!calls.is_array()) bad_request("messages[{}].tool_calls must be an array", index);
  std::string joined;
  for (size_t c = 0; c < calls.size(); ++c) {
    const Json& call = calls[c];
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object() ||
        !call["function"].contains("name") || !call["function"]["name"].is_string())
      bad_request("messages[{}].tool_calls[{}].function.name must be a string", index, c);
    if (c) joined += "\n";
    joined += std::string("<") + kDsml + "invoke name=\"" +
              call["function"]["name"].get<std::string>() + "\">\n" + encode_arguments(call, index) +
              "\n</" + kDsml + "invoke>";
  }
  return std::string("\n\n<") + kDsml + "function_calls>\n" + joined + "\n</" + kDsml +
         "function_calls>";
}

std::string tools_and_format(const Json& msg) {
  std::string out;
  if (has_truthy(msg, "tools")) out += "\n\n" + render_tools(msg["tools"]);
  if (has_truthy(msg, "response_format"))
    out += std::string("\n\n") + kResponseFormatHead + python_json_dumps(msg["response_format"]);
  return out;
}

std::string render_message(const Json& messages, size_t index, ThinkingMode mode) {
  const Json& msg = messages[index];
  if (!msg.is_object()) bad_request("messages[{}] must be an object", index);
  const long last_user = last_user_index(messages);
  const bool thinking = mode == ThinkingMode::Thinking;
  const std::string role = role_of(msg);
  const std::string content = str_field(msg, "content", index);
  std::string out;

  if (role == "system") {
    out += content + tools_and_format(msg);
  } else if (role == "user" || role == "developer") {
    std::string body = content;
    if (role == "developer") {
      if (content.empty()) bad_request("messages[{}]: a developer message needs content", index);
      body = tools_and_format(msg) + "\n\n# The user's message is: " + content;
    }
    out += "<｜User｜>" + body + "<｜Assistant｜>";
    out += (static_cast<long>(index) == last_user && thinking) ? kThinkStart : kThinkEnd;
  } else if (role == "tool") {
    size_t prev = index;
    while (prev > 0 && role_of(messages[prev - 1]) == "tool") --prev;
    if (prev == 0 || role_of(messages[prev - 1]) != "assistant")
      bad_request("messages[{}]: a tool message must follow an assistant message with tool_calls", index);
    const Json& assistant = messages[prev - 1];
    const size_t order = index - prev + 1;  // this is the order-th result
    const Json& calls = assistant.contains("tool_calls") ? assistant["tool_calls"] : Json();
    if (!python_truthy(calls) || !calls.is_array() || calls.size() < order)
      bad_request("messages[{}]: tool result without a matching tool call", index);
    if (order == 1) out += "\n\n<function_results>";
    out += "\n<result>" + content + "</result>";
    if (order == calls.size()) {
      out += "\n</function_results>";
      out += (static_cast<long>(index) >= last_user && thinking) ? "\n\n<think>" : "\n\n</think>";
    }
  } else if (role == "assistant") {
    std::string calls;
    if (has_truthy(msg, "tool_calls")) calls = render_tool_calls(msg["tool_calls"], index);
    std::string reasoning;
    if (thinking && static_cast<long>(index) > last_user) {
      const std::string rc = str_field(msg, "reasoning_content", index);
      if (rc.empty() && calls.empty())
        bad_request("messages[{}]: in thinking mode an assistant message after the last user "
                    "message needs reasoning_content or tool_calls", index);
      reasoning = rc + kThinkEnd;
    }
    out += reasoning + content + calls + kEos;
  } else {
    bad_request("messages[{}].role: unknown role '{}'", index, role);
  }
  return out;
}

// DeepSeek's drop_thinking_messages: before the last user/developer turn, assistant turns
// lose reasoning_content and (a quirk kept for exactness) developer turns are dropped.
Json drop_thinking(const Json& messages) {
  const long last_user = last_user_index(messages);
  Json kept = Json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string role = role_of(messages[i]);
    if (role == "user" || role == "system" || role == "tool" || static_cast<long>(i) >= last_user) {
      kept.push_back(messages[i]);
    } else if (role == "assistant") {
      Json copy = messages[i];
      copy.erase("reasoning_content");
      kept.push_back(std::move(copy));
    }
  }
  return kept;
}

}  // namespace

std::string render_tools(const Json& openai_tools) {
  if (!openai_tools.is_array()) bad_request("tools must be an array");
  std::string schemas;
  for (size_t t = 0; t < openai_tools.size(); ++t) {
    const Json& tool = openai_tools[t];
    if (!tool.is_object() || !tool.contains("function"))
      bad_request("tools[{}].function must be an object", t);
    if (t) schemas += "\n";
    schemas += python_json_dumps(tool["function"]);
  }
  return kToolsHead + schemas + kToolsTail;
}

std::string encode_messages(const Json& messages, const EncodeOptions& options) {
  if (!messages.is_array()) bad_request("messages must be an array");
  std::string prompt = options.add_bos ? kBos : "";
  Json full = (options.mode == ThinkingMode::Thinking && options.drop_thinking)
                  ? drop_thinking(messages)
                  : messages;
  for (size_t i = 0; i < full.size(); ++i) prompt += render_message(full, i, options.mode);
  return prompt;
}

}  // namespace ds::chat::dsv32
