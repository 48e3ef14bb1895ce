#include "bench/eval_runner.h"

#include <fstream>
#include <functional>
#include <memory>

#include "bench/serving.h"
#include "util/error.h"
#include "util/progress.h"

namespace ds::bench {

Url eval_url(const std::string& base_url, const std::string& host, int port) {
  return Url::from_flags(base_url, host, port);
}

void for_each_jsonl(const std::string& path, const std::function<void(const nlohmann::json&, int)>& fn) {
  std::ifstream in(path);
  DS_CHECK(in.good(), "cannot open {}", path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    DS_CHECK(!j.is_discarded(), "{}:{}: not JSON", path, n);
    fn(j, n);
  }
}

std::string reply_final_text(const nlohmann::json& message) {
  if (!message.contains("content") || !message["content"].is_string()) return "";
  std::string c = message["content"].get<std::string>();
  size_t end = c.rfind("</think>");
  return end == std::string::npos ? c : c.substr(end + 8);
}

std::vector<EvalCall> post_all(const Url& url, const std::string& path, const std::vector<std::string>& bodies,
                               int parallel, const std::string& label, int retries) {
  DS_CHECK(parallel > 0, "--parallel must be positive");
  raise_fd_limit();
  EventLoop loop;
  HttpClient client(loop, url);
  std::vector<EvalCall> calls(bodies.size());
  Progress progress(label, bodies.size());
  size_t next = 0;
  std::function<void()> start_next;
  std::function<void(size_t, int)> send = [&](size_t i, int attempt) {
    auto resp = std::make_shared<HttpResponse>();
    double st = now_seconds();
    client.request("POST", path, bodies[i],
                   {[resp](int status, std::string_view reason) {
                      resp->status = status;
                      resp->reason = reason;
                    },
                    [resp](std::string_view d) { resp->body += d; },
                    [&, resp, i, attempt, st](const std::string& err) {
                      resp->error = err;
                      bool transient = !err.empty() || resp->status >= 500;
                      if (transient && attempt < retries) {
                        loop.after(double(1 << attempt), [&, i, attempt] { send(i, attempt + 1); });
                        return;
                      }
                      calls[i] = {std::move(*resp), now_seconds() - st};
                      progress.add(1);
                      start_next();
                    }});
  };
  start_next = [&] {
    if (next < bodies.size()) send(next++, 0);
  };
  for (int k = 0; k < parallel && next < bodies.size(); ++k) start_next();
  loop.run();
  progress.finish();
  return calls;
}

}  // namespace ds::bench
