#include "bench/protocol.h"

#include "util/error.h"

namespace ds::bench {

using nlohmann::json;

BackendSpec backend_spec(const std::string& name) {
  if (name == "sglang" || name == "sglang-native") return {name, Api::kGenerate, "/generate"};
  if (name == "sglang-oai" || name == "vllm" || name == "openai" || name == "lmdeploy")
    return {name, Api::kCompletions, "/v1/completions"};
  if (name == "sglang-oai-chat" || name == "vllm-chat" || name == "openai-chat" || name == "lmdeploy-chat")
    return {name, Api::kChatCompletions, "/v1/chat/completions"};
  fail("unknown --backend '{}' (one of sglang, sglang-oai, sglang-oai-chat, vllm, openai, openai-chat)", name);
}

std::string build_payload(Api api, const std::string& model, const DatasetRow& row, int output_len,
                          const RequestOptions& opt) {
  json p;
  switch (api) {
    case Api::kGenerate:
      p = {{"text", row.prompt},
           {"sampling_params", {{"temperature", 0.0}, {"max_new_tokens", output_len}, {"ignore_eos", opt.ignore_eos}}},
           {"stream", opt.stream},
           {"lora_path", nullptr},
           {"return_logprob", false},
           {"logprob_start_len", -1}};
      break;
    case Api::kCompletions:
      p = {{"model", model},         {"prompt", row.prompt},  {"temperature", 0.0},
           {"best_of", 1},           {"max_tokens", output_len}, {"stream", opt.stream},
           {"ignore_eos", opt.ignore_eos}};
      break;
    case Api::kChatCompletions:
      p = {{"model", model},
           {"messages", json::array({{{"role", "user"}, {"content", row.prompt}}})},
           {"temperature", 0.0},
           {"max_completion_tokens", output_len},
           {"stream", opt.stream},
           {"ignore_eos", opt.ignore_eos}};
      break;
  }
  // Python's {**payload, **extra}: top-level keys of --extra-request-body replace ours.
  for (auto it = opt.extra_body.begin(); it != opt.extra_body.end(); ++it) p[it.key()] = it.value();
  return p.dump();
}

ResponseReader::ResponseReader(Api api, bool stream, int requested_output_len, double start_time)
    : api_(api), stream_(stream), st_(start_time), most_recent_(start_time), output_len_(requested_output_len) {}

void ResponseReader::on_line(std::string_view line, double now) {
  // Non-streamed chat bodies are read whole (sglang awaits response.json()); keep them for finish().
  if (!stream_) {
    body_.append(line).push_back('\n');
    return;
  }
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
  while (!line.empty() && is_space(line.back())) line.remove_suffix(1);
  if (line.empty()) return;
  if (line.starts_with("data: ")) line.remove_prefix(6);
  latency_ = now - st_;
  any_line_ = true;
  if (line == "[DONE]") return;
  on_json(json::parse(line), now);
}

void ResponseReader::on_text(const std::string& piece, double now) {
  if (ttft_ == 0.0) {
    ttft_ = now - st_;
  } else {
    chunks_.push_back(piece);
    itl_.push_back(now - most_recent_);
  }
  most_recent_ = now;
  text_ += piece;
}

void ResponseReader::on_json(const json& data, double now) {
  switch (api_) {
    case Api::kGenerate: {
      if (data.contains("meta_info") && data["meta_info"].contains("prompt_tokens"))
        prompt_tokens_ = data["meta_info"]["prompt_tokens"].get<int>();
      if (!data.contains("text") || !data["text"].is_string() || data["text"].get_ref<const std::string&>().empty())
        return;
      // /generate streams the cumulative text; ITL is spread evenly over the tokens of each chunk.
      text_ = data["text"].get<std::string>();
      output_len_ = data.at("meta_info").at("completion_tokens").get<int>();
      if (ttft_ == 0.0) {
        ttft_ = now - st_;
      } else {
        int new_tokens = output_len_ - last_output_len_;
        if (new_tokens == 0) return;
        double gap = (now - most_recent_) / new_tokens;
        itl_.insert(itl_.end(), new_tokens, gap);
      }
      most_recent_ = now;
      last_output_len_ = output_len_;
      return;
    }
    case Api::kCompletions: {
      bool has_usage = data.contains("usage") && data["usage"].is_object();
      if (has_usage && data["usage"].contains("prompt_tokens")) prompt_tokens_ = data["usage"]["prompt_tokens"].get<int>();
      // A usage-only chunk (stream_options.include_usage) has no choices; its count is the final one.
      if (!data.contains("choices") || !data["choices"].is_array() || data["choices"].empty()) {
        if (has_usage && data["usage"].contains("completion_tokens"))
          output_len_ = data["usage"]["completion_tokens"].get<int>();
        return;
      }
      const auto& piece = data["choices"][0].at("text");
      if (!piece.is_string() || piece.get_ref<const std::string&>().empty()) return;
      on_text(piece.get<std::string>(), now);
      if (data.contains("usage") && data["usage"].is_object() && data["usage"].contains("completion_tokens"))
        output_len_ = data["usage"]["completion_tokens"].get<int>();
      return;
    }
    case Api::kChatCompletions: {
      if (data.contains("choices") && data["choices"].is_array() && !data["choices"].empty()) {
        const auto& delta = data["choices"][0].value("delta", json::object());
        if (delta.contains("content") && delta["content"].is_string() &&
            !delta["content"].get_ref<const std::string&>().empty())
          on_text(delta["content"].get<std::string>(), now);
      }
      if (data.contains("usage") && data["usage"].is_object()) {
        const auto& u = data["usage"];
        if (u.contains("completion_tokens")) output_len_ = u["completion_tokens"].get<int>();
        if (u.contains("prompt_tokens")) prompt_tokens_ = u["prompt_tokens"].get<int>();
      }
      return;
    }
  }
}

void ResponseReader::finish(RequestOutput& out, double now) {
  if (!stream_) {
    // One JSON body: TTFT = latency = time of the whole response (sglang's non-streaming paths).
    json data = json::parse(body_);
    latency_ = now - st_;
    switch (api_) {
      case Api::kGenerate:
        if (data.contains("meta_info") && data["meta_info"].contains("prompt_tokens"))
          prompt_tokens_ = data["meta_info"]["prompt_tokens"].get<int>();
        if (data.contains("text") && data["text"].is_string() && !data["text"].get_ref<const std::string&>().empty()) {
          text_ = data["text"].get<std::string>();
          output_len_ = data.at("meta_info").at("completion_tokens").get<int>();
          ttft_ = latency_;
        }
        break;
      case Api::kCompletions:
      case Api::kChatCompletions: {
        const auto& c = data.at("choices").at(0);
        const auto& t = api_ == Api::kCompletions ? c.at("text") : c.at("message").at("content");
        if (t.is_string()) text_ = t.get<std::string>();
        if (api_ == Api::kChatCompletions || !text_.empty()) ttft_ = latency_;
        if (data.contains("usage") && data["usage"].is_object()) {
          const auto& u = data["usage"];
          if (u.contains("completion_tokens")) output_len_ = u["completion_tokens"].get<int>();
          if (u.contains("prompt_tokens")) prompt_tokens_ = u["prompt_tokens"].get<int>();
        }
        break;
      }
    }
  }
  (void)now;
  out.generated_text = std::move(text_);
  out.success = true;
  out.latency = latency_;
  out.ttft = ttft_;
  out.itl = std::move(itl_);
  out.text_chunks = std::move(chunks_);
  out.output_len = output_len_;
  out.start_time = st_;
  out.server_prompt_tokens = prompt_tokens_;
}

}  // namespace ds::bench
