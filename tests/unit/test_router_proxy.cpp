// `dsserve router`'s proxy against fake workers on loopback sockets: bodies and statuses pass
// through, streams are forwarded as they come (not buffered), a client that leaves cancels the
// upstream request, unreachable and 503 workers are retried elsewhere, all-dead gives a 503 error
// object, the API key is enforced at the router, and /metrics counts it all.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/http_client.h"
#include "held_port.h"
#include "router/router.h"
#include "server/http_server.h"

using namespace ds;
using Json = nlohmann::json;

namespace {

// A worker stand-in: /generate answers {"worker": name, "echo": body}; "stream" requests get a
// chunked SSE answer whose chunks the test pushes; `refuse_503` makes it answer 503, `hang` never
// answer, `sick` fail its health check.
struct FakeWorker {
  std::string name;
  std::atomic<bool> refuse_503{false}, hang{false}, sick{false};
  std::atomic<int> generates{0}, disconnects{0};
  std::mutex mu;
  std::shared_ptr<server::Responder> stream;  // the open stream, if any
  std::string last_auth;
  server::HttpServer http;

  explicit FakeWorker(std::string n)
      : name(std::move(n)), http(server::HttpServerOptions{"127.0.0.1", 0, 1}, [this](server::HttpRequest&& req, auto r) {
          handle(std::move(req), std::move(r));
        }) {
    http.start();
  }
  ~FakeWorker() { http.stop(0); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(http.port()); }

  void handle(server::HttpRequest&& req, std::shared_ptr<server::Responder> r) {
    if (req.path == "/health") return r->respond({sick ? 503 : 200, "text/plain", "", {}});
    if (req.path == "/get_server_info") return r->respond({200, "application/json", Json{{"worker", name}}.dump(), {}});
    ++generates;
    {
      std::lock_guard lk(mu);
      last_auth = req.header("authorization") ? *req.header("authorization") : "";
    }
    if (hang) return r->on_disconnect([this] { ++disconnects; });
    if (refuse_503) return r->respond({503, "application/json", R"({"error":{"message":"busy"}})", {{"Retry-After", "1"}}});
    Json body = Json::parse(req.body);
    if (body.value("stream", false)) {
      r->on_disconnect([this] { ++disconnects; });
      r->start_stream(200, "text/event-stream");
      std::lock_guard lk(mu);
      stream = r;
      return;
    }
    r->respond({body.value("status", 200), "application/json", Json{{"worker", name}, {"echo", req.body}}.dump(), {}});
  }
  // `pump` runs the client's loop meanwhile (its request goes out only then).
  std::shared_ptr<server::Responder> wait_stream(const std::function<void()>& pump) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lk(mu);
        if (stream) return stream;
      }
      pump();
    }
    return nullptr;
  }
};

struct TestRouter {
  router::Router r;
  bench::Url url;
  explicit TestRouter(router::RouterOptions o, uint16_t port = 0)
      : r((o.port = port, o.host = "127.0.0.1", std::move(o))) {
    r.start();
    url = bench::Url::parse("http://127.0.0.1:" + std::to_string(r.port()));
  }
  ~TestRouter() { r.stop(0); }
  bench::HttpResponse post(const std::string& path, const std::string& body) {
    return bench::http_fetch(url, "POST", path, body, 10);
  }
  std::string metrics() { return bench::http_fetch(url, "GET", "/metrics").body; }
};

router::RouterOptions options(std::vector<std::string> urls, const char* policy = "round_robin") {
  router::RouterOptions o;
  o.worker_urls = std::move(urls);
  o.policy.name = policy;
  o.health.interval_secs = 60;  // no health check interferes during a test
  return o;
}

bool has_line(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

}  // namespace

TEST(RouterProxy, PassesBodiesAndStatusesThroughRoundRobin) {
  FakeWorker a("a"), b("b");
  TestRouter tr(options({a.url(), b.url()}));
  std::vector<std::string> seen;
  for (int i = 0; i < 4; ++i) {
    const std::string body = R"({"text":"hello )" + std::to_string(i) + R"("})";
    auto res = tr.post("/generate", body);
    ASSERT_TRUE(res.ok()) << res.status << " " << res.error << " " << res.body;
    Json j = Json::parse(res.body);
    EXPECT_EQ(j["echo"], body);  // the request body reached the worker unchanged
    seen.push_back(j["worker"]);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "a", "b"}));
  // A worker's own error status passes through (not retried: only 503 is).
  auto res = tr.post("/generate", R"({"text":"x","status":400})");
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(Json::parse(res.body)["worker"], "a");
  // Info endpoints go to the first healthy worker; unknown paths are the router's 404.
  EXPECT_EQ(Json::parse(bench::http_fetch(tr.url, "GET", "/get_server_info").body)["worker"], "a");
  auto nf = bench::http_fetch(tr.url, "GET", "/nope");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(Json::parse(nf.body)["error"]["code"], 404);
  const std::string m = tr.metrics();
  EXPECT_TRUE(has_line(m, "sgl_router_requests_total{route=\"/generate\"} 5")) << m;
  EXPECT_TRUE(has_line(m, "sgl_router_processed_requests_total{worker=\"" + a.url() + "\"} 4")) << m;  // 3 + info
  EXPECT_TRUE(has_line(m, "sgl_router_processed_requests_total{worker=\"" + b.url() + "\"} 2")) << m;
  EXPECT_TRUE(has_line(m, "sgl_router_active_workers 2")) << m;
}

TEST(RouterProxy, RetriesUnreachableAnd503Workers) {
  FakeWorker live("live"), busy("busy");
  busy.refuse_503 = true;
  const HeldPort dead_port;
  const std::string dead = dead_port.url();
  TestRouter tr(options({dead, busy.url(), live.url()}));
  for (int i = 0; i < 6; ++i) {
    auto res = tr.post("/generate", R"({"text":"hi"})");
    ASSERT_TRUE(res.ok()) << res.status << " " << res.body;
    EXPECT_EQ(Json::parse(res.body)["worker"], "live");
  }
  const std::string m = tr.metrics();
  // The dead worker left the rotation after its first refusal; the busy one stays (503 is not death).
  EXPECT_TRUE(has_line(m, "sgl_router_worker_health{worker=\"" + dead + "\"} 0")) << m;
  EXPECT_TRUE(has_line(m, "sgl_router_worker_health{worker=\"" + busy.url() + "\"} 1")) << m;
  EXPECT_TRUE(has_line(m, "sgl_router_worker_errors_total{worker=\"" + dead + "\"} 1")) << m;
  EXPECT_TRUE(has_line(m, "sgl_router_processed_requests_total{worker=\"" + live.url() + "\"} 6")) << m;
  EXPECT_GE(busy.generates.load(), 1);
  EXPECT_TRUE(m.find("sgl_router_retries_total{route=\"/generate\"} 0") == std::string::npos) << m;
}

TEST(RouterProxy, AllWorkersDownGives503WithTheCause) {
  {
    const HeldPort p1, p2;
    TestRouter tr(options({p1.url(), p2.url()}));
    auto res = tr.post("/v1/chat/completions", R"({"messages":[]})");
    EXPECT_EQ(res.status, 503);
    Json j = Json::parse(res.body);
    const std::string msg = j["error"]["message"];
    EXPECT_NE(msg.find("no worker could serve the request after 2 attempts"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Connection refused"), std::string::npos) << msg;
    EXPECT_EQ(j["error"]["type"], "server_error");
    EXPECT_EQ(bench::http_fetch(tr.url, "GET", "/health").status, 503);
    auto again = tr.post("/generate", R"({"text":"x"})");
    EXPECT_EQ(again.status, 503);
    EXPECT_NE(std::string(Json::parse(again.body)["error"]["message"]).find("no healthy worker (of 2)"),
              std::string::npos) << again.body;
  }
  // A 503 from the last worker there is to try passes through as the worker wrote it.
  FakeWorker busy("busy");
  busy.refuse_503 = true;
  const HeldPort p3;
  TestRouter tr(options({p3.url(), busy.url()}));
  auto res = tr.post("/generate", R"({"text":"x"})");
  EXPECT_EQ(res.status, 503);
  EXPECT_EQ(Json::parse(res.body)["error"]["message"], "busy");
  EXPECT_EQ(bench::http_fetch(tr.url, "GET", "/health").status, 200);  // busy is still in rotation
  // Then it dies too: the cause is named.
  const std::string busy_url = busy.url();
  busy.http.stop(0);
  auto res2 = tr.post("/generate", R"({"text":"x"})");
  EXPECT_EQ(res2.status, 503);
  EXPECT_NE(std::string(Json::parse(res2.body)["error"]["message"]).find("after 1 attempt; last: " + busy_url),
            std::string::npos) << res2.body;
}

// A worker URL that points back at the router: the forwarded request comes back carrying the router's own
// id and is answered 508 (a loop would otherwise forward it again and again until descriptors run out).
TEST(RouterProxy, AWorkerUrlPointingAtTheRouterItselfIsALoop) {
  const HeldPort self;
  TestRouter tr(options({self.url()}), self.port);
  ASSERT_EQ(tr.r.port(), self.port);
  auto res = tr.post("/generate", R"({"text":"x"})");
  EXPECT_EQ(res.status, 508) << res.body;
  EXPECT_NE(std::string(Json::parse(res.body)["error"]["message"]).find("points back at this router"),
            std::string::npos) << res.body;
  EXPECT_EQ(tr.post("/v1/chat/completions", R"({"messages":[]})").status, 508);
}

TEST(RouterProxy, StreamsChunksAsTheyComeAndCancelsOnDisconnect) {
  FakeWorker w("w");
  TestRouter tr(options({w.url()}));
  bench::EventLoop loop;
  bench::HttpClient client(loop, tr.url);
  std::string got, error = "(running)";
  int status = 0;
  client.request("POST", "/v1/completions", R"({"prompt":"p","stream":true})",
                 {[&](int s, std::string_view) { status = s; }, [&](std::string_view d) { got += d; },
                  [&](const std::string& e) { error = e; }});
  auto pump = [&] { loop.run_for(0.01); };
  auto stream = w.wait_stream(pump);
  ASSERT_TRUE(stream);
  auto pump_until = [&](const std::string& want) {
    for (int i = 0; i < 200 && got.find(want) == std::string::npos; ++i) loop.run_for(0.01);
    return got.find(want) != std::string::npos;
  };
  stream->send("data: one\n\n");
  ASSERT_TRUE(pump_until("data: one\n\n")) << "status " << status << " got '" << got << "' error " << error;  // arrived while the worker's response is still open
  EXPECT_EQ(status, 200);
  stream->send("data: two\n\n");
  ASSERT_TRUE(pump_until("data: two\n\n")) << got;
  stream->end_stream();
  loop.run_for(2);
  EXPECT_EQ(error, "");
  EXPECT_EQ(got, "data: one\n\ndata: two\n\n");
  EXPECT_EQ(w.disconnects.load(), 0);

  // A client that goes away mid-stream: the worker sees its connection close.
  {
    std::lock_guard lk(w.mu);
    w.stream.reset();
  }
  bench::HttpCancel cancel = client.request("POST", "/v1/completions", R"({"prompt":"p","stream":true})", {});
  auto s2 = w.wait_stream(pump);
  ASSERT_TRUE(s2);
  s2->send("data: first\n\n");
  loop.run_for(0.2);
  cancel();
  loop.run_for(0.2);
  for (int i = 0; i < 300 && w.disconnects.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(w.disconnects.load(), 1);
  const std::string m = tr.metrics();
  EXPECT_TRUE(has_line(m, "sgl_router_client_disconnects_total 1")) << m;
  EXPECT_TRUE(has_line(m, "sgl_router_running_requests{worker=\"" + w.url() + "\"} 0")) << m;
}

TEST(RouterProxy, EnforcesTheApiKeyAndSendsItUpstream) {
  FakeWorker w("w");
  auto o = options({w.url()});
  o.api_key = "sk-router";
  TestRouter tr(o);
  auto missing = tr.post("/generate", R"({"text":"x"})");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(Json::parse(missing.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(w.generates.load(), 0);
  bench::EventLoop loop;
  bench::HttpClient c(loop, tr.url);
  c.clear_headers();
  c.set_header("Authorization", "Bearer sk-router");
  int status = 0;
  c.request("POST", "/generate", R"({"text":"x"})", {[&](int s, std::string_view) { status = s; }, nullptr, nullptr});
  loop.run_for(5);
  EXPECT_EQ(status, 200);
  std::lock_guard lk(w.mu);
  EXPECT_EQ(w.last_auth, "Bearer sk-router");
  // Health and metrics stay open.
  EXPECT_EQ(bench::http_fetch(tr.url, "GET", "/health").status, 200);
}

TEST(RouterProxy, PassesTheClientsKeyThroughWithoutOne) {
  FakeWorker w("w");
  TestRouter tr(options({w.url()}));
  bench::EventLoop loop;
  bench::HttpClient c(loop, tr.url);
  c.clear_headers();
  c.set_header("Authorization", "Bearer client-key");
  c.request("POST", "/generate", R"({"text":"x"})", {});
  loop.run_for(5);
  std::lock_guard lk(w.mu);
  EXPECT_EQ(w.last_auth, "Bearer client-key");
}

TEST(RouterProxy, TimesOutWith504AndCancelsTheWorker) {
  FakeWorker w("w");
  w.hang = true;
  auto o = options({w.url()});
  o.request_timeout_secs = 0.3;
  TestRouter tr(o);
  auto res = tr.post("/generate", R"({"text":"x"})");
  EXPECT_EQ(res.status, 504) << res.body;
  EXPECT_NE(std::string(Json::parse(res.body)["error"]["message"]).find("timed out after 0.3 s"), std::string::npos)
      << res.body;
  for (int i = 0; i < 300 && w.disconnects.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(w.disconnects.load(), 1);  // the upstream connection was closed
  EXPECT_EQ(w.generates.load(), 1);    // and not retried
}

TEST(RouterProxy, AStreamThatBreaksOffEndsWithAnErrorEvent) {
  auto w = std::make_unique<FakeWorker>("w");
  TestRouter tr(options({w->url()}));
  bench::EventLoop loop;
  bench::HttpClient client(loop, tr.url);
  std::string got, error = "(running)";
  client.request("POST", "/v1/chat/completions", R"({"messages":[],"stream":true})",
                 {nullptr, [&](std::string_view d) { got += d; }, [&](const std::string& e) { error = e; }});
  auto stream = w->wait_stream([&] { loop.run_for(0.01); });
  ASSERT_TRUE(stream);
  stream->send("data: {\"partial\":1}\n\n");
  for (int i = 0; i < 200 && got.empty(); ++i) loop.run_for(0.01);
  stream.reset();
  w.reset();  // the worker goes away mid-stream
  for (int i = 0; i < 300 && error == "(running)"; ++i) loop.run_for(0.01);
  EXPECT_EQ(error, "");  // the router ended the client's stream properly ...
  EXPECT_TRUE(got.starts_with("data: {\"partial\":1}\n\n")) << got;
  EXPECT_NE(got.find("data: {\"error\":"), std::string::npos) << got;  // ... with an error event
  EXPECT_NE(tr.metrics().find("error_type=\"stream_interrupted\"} 1"), std::string::npos);
}

TEST(RouterProxy, HealthChecksTakeWorkersOutAndBringThemBack) {
  FakeWorker a("a"), b("b");
  auto o = options({a.url(), b.url()});
  o.health.interval_secs = 0.1;
  o.health.failure_threshold = 2;
  o.health.success_threshold = 2;
  TestRouter tr(o);
  auto health_of = [&](const FakeWorker& w) {
    const std::string m = tr.metrics();
    const std::string key = "sgl_router_worker_health{worker=\"" + w.url() + "\"} ";
    const size_t at = m.find(key);
    return at == std::string::npos ? -1 : m[at + key.size()] - '0';
  };
  auto wait_for = [&](const FakeWorker& w, int want) {
    for (int i = 0; i < 300 && health_of(w) != want; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return health_of(w) == want;
  };
  a.sick = true;
  ASSERT_TRUE(wait_for(a, 0));
  // Out of rotation: every request goes to b.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Json::parse(tr.post("/generate", R"({"text":"x"})").body)["worker"], "b");
  a.sick = false;
  ASSERT_TRUE(wait_for(a, 1));
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.insert(Json::parse(tr.post("/generate", R"({"text":"x"})").body)["worker"]);
  EXPECT_EQ(seen, (std::set<std::string>{"a", "b"}));
}
