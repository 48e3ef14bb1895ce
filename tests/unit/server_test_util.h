// An ApiServer over the fake engine and the small fixture tokenizer, driven without sockets.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "chat/encoder.h"
#include "server/api_server.h"
#include "server/json.h"
#include "server_fakes.h"

namespace ds::server::testing {

inline ServerConfig test_config() {
  ServerConfig c;
  c.served_model_name = "test-model";
  c.model_path = "/models/test";
  c.context_length = 4096;
  c.reasoning_parser = true;
  c.tool_call_parser = "deepseekv32";
  c.enable_metrics = true;
  return c;
}

inline runtime::EngineConfig engine_config(int64_t context_length = 4096) {
  auto c = FakeEngine::default_config();
  c.context_length = int32_t(context_length);
  return c;
}

struct Harness {
  SerialExecutor ex;  // first: destroyed last, after the engine stopped posting to it
  tok::Tokenizer tok = tok::Tokenizer::load(DS_SOURCE_DIR "/tests/fixtures/tokenizer/small");
  FakeEngine engine;
  ApiServer api;

  explicit Harness(ServerConfig cfg = test_config(), runtime::EngineConfig ecfg = engine_config())
      : engine(ecfg, &tok), api(std::move(cfg), engine, tok, chat::make_dsv32_encoder()) {}
  ~Harness() { engine.shutdown(); }

  // Starts a request; the returned responder fills in as the answer comes.
  std::shared_ptr<RecordingResponder> start(const std::string& method, const std::string& path, const std::string& body,
                                            HeaderList headers = {}) {
    auto r = std::make_shared<RecordingResponder>(ex);
    HttpRequest req;
    req.method = method;
    req.target = req.path = path;
    req.body = body;
    req.headers = std::move(headers);
    ex.run([&] { api.handle(std::move(req), r); });
    return r;
  }
  std::shared_ptr<RecordingResponder> call(const std::string& method, const std::string& path, const Json& body,
                                           HeaderList headers = {}) {
    auto r = start(method, path, body.is_null() ? std::string() : dump(body), std::move(headers));
    EXPECT_TRUE(r->wait()) << method << " " << path << " did not complete";
    return r;
  }
  std::shared_ptr<RecordingResponder> post(const std::string& path, const Json& body) {
    return call("POST", path, body);
  }
  std::shared_ptr<RecordingResponder> get(const std::string& path) { return call("GET", path, nullptr); }
};

inline Json body_json(const RecordingResponder& r) { return Json::parse(r.body); }

// The JSON payloads of an SSE body ("[DONE]" as the string "[DONE]").
inline std::vector<Json> sse_events(const std::string& body) {
  std::vector<Json> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    std::string data = body.substr(pos + 6, end - pos - 6);
    out.push_back(data == "[DONE]" ? Json("[DONE]") : Json::parse(data));
    pos = end;
  }
  return out;
}

inline Json user_chat(const std::string& text, Json extra = Json::object()) {
  Json b = Json{{"model", "test-model"}, {"messages", Json::array({Json{{"role", "user"}, {"content", text}}})}};
  for (auto it = extra.begin(); it != extra.end(); ++it) b[it.key()] = it.value();
  return b;
}

}  // namespace ds::server::testing
