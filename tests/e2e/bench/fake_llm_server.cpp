#include "fake_llm_server.h"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <sstream>
#include <thread>

namespace ds::bench::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using nlohmann::json;

namespace {

int max_tokens_of(const json& body) {
  if (body.contains("sampling_params") && body["sampling_params"].contains("max_new_tokens"))
    return body["sampling_params"]["max_new_tokens"].get<int>();
  for (const char* k : {"max_tokens", "max_completion_tokens"})
    if (body.contains(k) && body[k].is_number()) return body[k].get<int>();
  return 16;
}

std::string prompt_of(const json& body) {
  if (body.contains("text") && body["text"].is_string()) return body["text"];
  if (body.contains("prompt") && body["prompt"].is_string()) return body["prompt"];
  std::string all;
  if (body.contains("messages"))
    for (const auto& m : body["messages"])
      if (m.contains("content") && m["content"].is_string()) all += m["content"].get<std::string>() + " ";
  return all;
}

int count_words(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int n = 0;
  while (in >> w) ++n;
  return n;
}

bool include_usage(const json& body) {
  return body.contains("stream_options") && body["stream_options"].value("include_usage", false);
}

// The SSE events (each "data: ...\n\n") of one streamed reply, in the endpoint's format.
std::vector<std::string> stream_events(const std::string& path, const json& body, const FakeReply& r, int prompt_tokens) {
  std::vector<std::string> ev;
  auto add = [&](const json& j) { ev.push_back("data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"); };
  int n = static_cast<int>(r.pieces.size());
  json usage = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", n}, {"total_tokens", prompt_tokens + n}};
  if (path == "/generate") {
    std::string text;
    for (int i = 0; i < n; ++i) {
      text += r.pieces[i];
      json fin = i == n - 1 ? json{{"type", "length"}, {"length", n}} : json(nullptr);
      add({{"text", text},
           {"meta_info", {{"id", "fake"}, {"prompt_tokens", prompt_tokens}, {"completion_tokens", i + 1}, {"finish_reason", fin}}}});
    }
  } else if (path == "/v1/completions") {
    for (const auto& p : r.pieces)
      add({{"id", "cmpl-fake"}, {"object", "text_completion"}, {"choices", {{{"index", 0}, {"text", p}, {"finish_reason", nullptr}}}}});
    json last = {{"id", "cmpl-fake"}, {"choices", {{{"index", 0}, {"text", ""}, {"finish_reason", "length"}}}}};
    if (include_usage(body)) last["usage"] = usage;
    add(last);
  } else {
    auto chunk = [&](const json& delta, const json& fin) {
      return json{{"id", "chatcmpl-fake"}, {"object", "chat.completion.chunk"},
                  {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", fin}}}}};
    };
    add(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
    if (!r.reasoning.empty()) add(chunk({{"reasoning_content", r.reasoning}}, nullptr));
    for (const auto& p : r.pieces) add(chunk({{"content", p}}, nullptr));
    json last = chunk(json::object(), "length");
    if (include_usage(body)) last["usage"] = usage;
    add(last);
  }
  ev.push_back("data: [DONE]\n\n");
  return ev;
}

json whole_reply(const std::string& path, const json& body, const FakeReply& r, int prompt_tokens) {
  std::string text;
  for (const auto& p : r.pieces) text += p;
  int n = static_cast<int>(r.pieces.size());
  json usage = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", n}, {"total_tokens", prompt_tokens + n}};
  if (path == "/generate")
    return {{"text", text},
            {"meta_info", {{"id", "fake"}, {"prompt_tokens", prompt_tokens}, {"completion_tokens", n},
                           {"finish_reason", {{"type", "length"}, {"length", n}}}}}};
  if (path == "/v1/completions")
    return {{"id", "cmpl-fake"}, {"object", "text_completion"},
            {"choices", {{{"index", 0}, {"text", text}, {"finish_reason", "length"}}}}, {"usage", usage}};
  json msg = {{"role", "assistant"}, {"content", text}};
  if (!r.reasoning.empty()) msg["reasoning_content"] = r.reasoning;
  return {{"id", "chatcmpl-fake"}, {"object", "chat.completion"},
          {"choices", {{{"index", 0}, {"message", msg}, {"finish_reason", "length"}}}}, {"usage", usage}};
}

std::string head(int status, const std::string& type, bool chunked, size_t length) {
  const char* reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : status == 404 ? "Not Found" : "Error";
  std::string h = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nConnection: keep-alive\r\n", status, reason, type);
  h += chunked ? "Transfer-Encoding: chunked\r\n\r\n" : fmt::format("Content-Length: {}\r\n\r\n", length);
  return h;
}

std::string as_chunk(const std::string& data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); }

}  // namespace

FakeReply default_reply(const std::string& path, const json& body) {
  (void)path;
  FakeReply r;
  r.pieces.assign(static_cast<size_t>(std::max(0, max_tokens_of(body))), "tok ");
  return r;
}

struct FakeLlmServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  Responder responder;
  std::optional<double> accept_length;
  std::thread thread;
  std::atomic<uint64_t> served{0};
  std::atomic<int> inflight{0}, max_inflight{0};

  void accept() {
    acceptor.async_accept([this](const error_code& ec, tcp::socket s) {
      if (ec) return;
      s.set_option(tcp::no_delay(true));
      std::make_shared<Session>(this, std::move(s))->read();
      accept();
    });
  }

  struct Session : std::enable_shared_from_this<Session> {
    Impl* srv;
    tcp::socket sock;
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    std::vector<std::string> events;
    size_t next = 0;
    double delay = 0;
    std::shared_ptr<asio::steady_timer> timer;
    std::string out;  // bytes being written; kept alive until the write completes

    Session(Impl* s, tcp::socket so) : srv(s), sock(std::move(so)) {}

    void read() {
      req = {};
      http::async_read(sock, buf, req, [self = shared_from_this()](const error_code& ec, size_t) {
        if (!ec) self->handle();
      });
    }

    void send(std::string bytes, std::function<void()> then) {
      out = std::move(bytes);
      asio::async_write(sock, asio::buffer(out), [self = shared_from_this(), then](const error_code& ec, size_t) {
        if (!ec) then();
      });
    }

    void handle() {
      std::string path(req.target().data(), req.target().size());
      if (req.method() == http::verb::get) {
        json j = path == "/v1/models" ? json{{"object", "list"}, {"data", {{{"id", "fake-model"}, {"object", "model"}}}}}
                                      : json{{"internal_states", {json::object()}}};
        if (path == "/get_server_info" && srv->accept_length) j["internal_states"][0]["avg_spec_accept_length"] = *srv->accept_length;
        std::string b = j.dump();
        return send(head(200, "application/json", false, b.size()) + b, [s = shared_from_this()] { s->read(); });
      }
      json body = json::parse(req.body(), nullptr, false);
      if (body.is_discarded()) {
        std::string b = R"({"error":"bad json"})";
        return send(head(400, "application/json", false, b.size()) + b, [s = shared_from_this()] { s->read(); });
      }
      FakeReply r = srv->responder ? srv->responder(path, body) : default_reply(path, body);
      int cur = ++srv->inflight;
      int prev = srv->max_inflight.load();
      while (cur > prev && !srv->max_inflight.compare_exchange_weak(prev, cur)) {
      }
      int prompt_tokens = r.prompt_tokens >= 0 ? r.prompt_tokens : count_words(prompt_of(body));
      if (r.status != 200) {
        return send(head(r.status, "text/plain", false, r.error_body.size()) + r.error_body, [s = shared_from_this()] { s->done(); });
      }
      if (!body.value("stream", false)) {
        std::string b = whole_reply(path, body, r, prompt_tokens).dump(-1, ' ', false, json::error_handler_t::replace);
        return send(head(200, "application/json", false, b.size()) + b, [s = shared_from_this()] { s->done(); });
      }
      events = stream_events(path, body, r, prompt_tokens);
      next = 0;
      delay = r.piece_delay_s;
      if (delay <= 0) {  // everything at once: one write, as fast as the client can take it
        std::string all;
        for (const auto& e : events) all += e;
        return send(head(200, "text/event-stream", true, 0) + as_chunk(all) + "0\r\n\r\n", [s = shared_from_this()] { s->done(); });
      }
      send(head(200, "text/event-stream", true, 0), [s = shared_from_this()] { s->pace(); });
    }

    void pace() {
      if (next == events.size()) return send("0\r\n\r\n", [s = shared_from_this()] { s->done(); });
      timer = std::make_shared<asio::steady_timer>(sock.get_executor());
      timer->expires_after(std::chrono::microseconds(static_cast<int64_t>(delay * 1e6)));
      timer->async_wait([s = shared_from_this()](const error_code& ec) {
        if (ec) return;
        s->send(as_chunk(s->events[s->next++]), [s] { s->pace(); });
      });
    }

    void done() {
      --srv->inflight;
      ++srv->served;
      read();
    }
  };
};

FakeLlmServer::FakeLlmServer(Responder responder, std::optional<double> accept_length) : impl_(std::make_unique<Impl>()) {
  impl_->responder = std::move(responder);
  impl_->accept_length = accept_length;
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(4096);
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

FakeLlmServer::~FakeLlmServer() {
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t FakeLlmServer::port() const { return impl_->acceptor.local_endpoint().port(); }
std::string FakeLlmServer::url() const { return fmt::format("http://127.0.0.1:{}", port()); }
uint64_t FakeLlmServer::requests() const { return impl_->served.load(); }
int FakeLlmServer::max_inflight() const { return impl_->max_inflight.load(); }

}  // namespace ds::bench::testing
