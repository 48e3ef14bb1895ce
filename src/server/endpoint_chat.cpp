// POST /v1/chat/completions: body -> chat request (chat/) -> prompt text -> token ids -> n engine
// requests; the ChatWriter turns the output into OpenAI's message / chunks.
#include <algorithm>
#include <ctime>

#include "chat/errors.h"
#include "chat/output_parser.h"
#include "chat/request.h"
#include "chat/tool_parser.h"
#include "server/api_error.h"
#include "server/chat_prepare.h"
#include "server/chat_writer.h"
#include "server/endpoints.h"
#include "server/generation_job.h"
#include "server/grammar_params.h"
#include "server/json_fields.h"
#include "server/request_helpers.h"

namespace ds::server {
namespace {

// tool_choice: "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}.
// "required" and a named function are enforced: after its reasoning the model must call one of
// the allowed tools. With the deepseekv32 parser a grammar holds the whole call block, arguments
// under each tool's schema; with deepseekv31 a forced continuation opens the call (its arguments
// are the model's own). A named function also narrows the tools the model is shown to that one.
// "auto" with a strict tool under deepseekv32: the content stays free, and a call block that the
// model opens follows the tools' schemas (the same block grammar, made optional).
struct ToolChoice {
  bool parse_tools = false;
  std::vector<std::string> forced;  // the tools one of which must be called; empty: no constraint
};

ToolChoice apply_tool_choice(Json& body) {
  const bool has_tools = body.contains("tools") && body["tools"].is_array() && !body["tools"].empty();
  auto it = body.find("tool_choice");
  if (it == body.end() || it->is_null()) return {has_tools, {}};
  if (it->is_string()) {
    const auto& c = it->get_ref<const std::string&>();
    if (c == "none") return {};
    if (c == "auto") return {has_tools, {}};
    if (c == "required") {
      if (!has_tools) bad_param("tool_choice", "tool_choice 'required' needs a non-empty tools list");
      std::vector<std::string> names = chat::tool_names_of(body["tools"]);
      std::sort(names.begin(), names.end());
      names.erase(std::unique(names.begin(), names.end()), names.end());
      return {true, std::move(names)};
    }
    bad_param("tool_choice", "tool_choice must be 'none', 'auto', 'required' or a named function, got '" + c + "'");
  }
  if (!it->is_object() || !it->contains("function") || !(*it)["function"].is_object() ||
      !(*it)["function"].contains("name") || !(*it)["function"]["name"].is_string())
    bad_param("tool_choice",
              "tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\", "
              "\"function\": {\"name\": ...}}");
  const std::string name = (*it)["function"]["name"].get<std::string>();
  if (!has_tools) bad_param("tool_choice", "tool_choice names function '" + name + "' but no tools are given");
  Json only = Json::array();
  for (const auto& t : body["tools"])
    if (t.is_object() && t.contains("function") && t["function"].is_object() && t["function"].value("name", "") == name)
      only.push_back(t);
  if (only.empty()) bad_param("tool_choice", "tool_choice names function '" + name + "', which is not in tools");
  body["tools"] = std::move(only);
  body["tool_choice"] = "auto";  // what the chat layer understands; narrowing and forcing are done here
  return {true, {name}};
}

// The forced continuation of a tool_choice: once the reasoning is closed (at once when the prompt
// closed it), the output must open a call to one of `names` in the server's tool-call format.
runtime::ForcedContinuation forced_tool_call(const ServerState& st, const std::vector<std::string>& names,
                                             bool starts_in_reasoning) {
  runtime::ForcedContinuation f;
  if (starts_in_reasoning) f.trigger = st.tokenizer.encode("</think>", false);
  for (const auto& n : names)
    f.alternatives.push_back(st.tokenizer.encode(chat::tool_call_opening(st.config.tool_call_parser, n), false));
  return f;
}

}  // namespace

PreparedChat prepare_chat(ServerState& st, Json& body, const std::string& id) {
  check_model(st, body);
  if (!st.encoder)
    throw ApiError(400,
                   "This server has no chat format for its model (no supported chat template); use /v1/completions");
  PreparedChat out;
  out.params = parse_openai_params(body, OpenAiApi::Chat, st.config.sampling_defaults);
  const ToolChoice tool_choice = apply_tool_choice(body);
  if (!tool_choice.forced.empty() && st.config.tool_call_parser.empty())
    bad_param("tool_choice",
              "tool_choice 'required' or a named function needs the server to run with --tool-call-parser");
  const bool parallel_calls = Fields{body, ""}.boolean("parallel_tool_calls").value_or(true);
  check_generation_count(st, 1, out.params.n, "n");

  chat::EncodedPrompt prompt;
  try {
    prompt = st.encoder->encode(chat::parse_chat_request(body));
  } catch (const chat::RequestError& e) {
    std::string msg = e.what();
    bad_param(msg.substr(0, msg.find_first_of(" [:.")), msg);
  }
  out.prompt_ids = st.tokenizer.encode(prompt.text, false);
  out.max_new_tokens = resolve_max_new_tokens(st, out.prompt_ids.size(), out.params, -1, "messages");

  out.parser.starts_in_reasoning = prompt.starts_in_reasoning;
  out.parser.reasoning_parser = st.config.reasoning_parser;
  if (tool_choice.parse_tools && !st.config.tool_call_parser.empty()) {
    out.parser.tool_parser = st.config.tool_call_parser;
    out.parser.tool_names = chat::tool_names_of(body["tools"]);
  }
  out.requests = make_requests(id, out.prompt_ids, out.params, out.max_new_tokens, out.params.n > 1, 0);
  std::optional<GrammarRequest> grammar = out.params.grammar;
  if (!tool_choice.forced.empty() && st.config.tool_call_parser == "deepseekv32") {
    // The answer is the call block alone, so response_format (about content) has nothing to apply to.
    grammar = tool_call_grammar(body["tools"], tool_choice.forced, parallel_calls);
  } else if (tool_choice.parse_tools && tool_choice.forced.empty() && st.config.tool_call_parser == "deepseekv32" &&
             !grammar && has_strict_tool(body["tools"])) {
    // "auto" with strict tools: the content is free, but a call block, once opened, follows the
    // schemas. (A response_format / regex / ebnf of the request keeps the whole answer instead.)
    std::vector<std::string> names = chat::tool_names_of(body["tools"]);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    grammar = tool_call_grammar(body["tools"], names, parallel_calls, /*optional_block=*/true);
  } else if (!tool_choice.forced.empty()) {
    const auto forced = forced_tool_call(st, tool_choice.forced, prompt.starts_in_reasoning);
    for (auto& r : out.requests) r.forced = forced;
  }
  attach_grammar(*st.grammars, st.tokenizer, grammar, prompt.starts_in_reasoning, out.requests);
  return out;
}

void chat_completions(ServerState& st, const HttpRequest& req, const std::shared_ptr<Responder>& r) {
  Json body = parse_body(req.body);
  Fields f{body, ""};
  const bool stream = f.boolean("stream").value_or(false);
  const bool usage_in_stream = stream_include_usage(body);
  const bool separate_reasoning = f.boolean("separate_reasoning").value_or(true);
  f.boolean("stream_reasoning");  // type-checked; reasoning is always streamed as it comes

  ChatWriterOptions wo;
  wo.id = new_request_id("chatcmpl-");
  PreparedChat chat = prepare_chat(st, body, wo.id);
  attach_bootstrap(body, chat.requests);
  wo.created = int64_t(std::time(nullptr));
  wo.model = st.config.served_model_name;
  wo.stream = stream;
  wo.include_usage = stream && usage_in_stream;
  wo.n = chat.params.n;
  wo.logprobs = chat.params.sampling.logprobs;
  wo.parser = chat.parser;
  wo.parser.reasoning_parser = chat.parser.reasoning_parser && separate_reasoning;
  auto writer = std::make_unique<ChatWriter>(wo, chat.requests.size(), st.tokenizer);
  auto job =
      std::make_shared<GenerationJob>(st, r, GenerationJob::Options{wo.id, stream, chat.params.n}, std::move(writer));
  job->start(std::move(chat.requests));
}

}  // namespace ds::server
