#include "router/proxy.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "router/response_relay.h"
#include "router/router_core.h"
#include "server/api_error.h"
#include "server/json.h"

namespace ds::router {
namespace {

// Response headers worth passing back besides the content type (the front server writes its own
// framing and connection headers).
class Proxy : public std::enable_shared_from_this<Proxy> {
 public:
  Proxy(RouterCore& core, ProxyCall call, std::shared_ptr<server::Responder> r)
      : core_(core), call_(std::move(call)), client_(std::move(r)) {}

  void start() {
    ++core_.routes[call_.route].requests;
    // The disconnect callback runs on the client connection's executor: hop to the loop.
    client_->on_disconnect([weak = weak_from_this(), &loop = core_.loop] {
      loop.post([weak] {
        if (auto self = weak.lock()) self->client_gone();
      });
    });
    attempt();
  }

 private:
  void attempt() {
    if (gone_) return;
    std::vector<Candidate> candidates = core_.workers.candidates(tried_);
    if (candidates.empty()) return give_up();
    size_t w;
    if (call_.by_policy) {
      w = core_.policy->select(candidates, call_.text);
    } else {
      w = candidates.front().worker;
    }
    tried_.push_back(w);
    worker_ = w;
    Worker& wk = core_.workers[w];
    ++wk.routed;
    ++wk.in_flight;
    relay_.reset();

    bench::HttpCallbacks cb;
    auto self = shared_from_this();
    cb.on_head = [self](int status, const bench::HttpHeaders& h) { self->on_head(status, h); };
    cb.on_body = [self](std::string_view data) { self->on_body(data); };
    cb.on_done = [self](const std::string& error) { self->on_done(error); };
    bench::HttpRequestOptions ro;
    ro.headers = call_.headers;
    ro.timeout_s = core_.options.request_timeout_secs;
    cancel_ = core_.clients[w]->request(call_.method, call_.target, call_.body, std::move(cb), ro);
  }

  void on_head(int status, const bench::HttpHeaders& h) {
    // A 503 is dropped (on_done retries) while another worker is left; with none it passes through.
    if (!relay_.head(status, h, may_retry() && !core_.workers.candidates(tried_).empty(), *client_)) cancel_();
  }

  void on_body(std::string_view data) { relay_.data(data, *client_); }

  void on_done(const std::string& error) {
    Worker& wk = core_.workers[worker_];
    --wk.in_flight;
    cancel_ = nullptr;
    if (gone_) return;  // the client left: nothing to answer
    if (error.empty() && !relay_.dropped_503()) {
      finished_ = true;
      return relay_.finish(*client_);
    }
    ++wk.errors;
    const bool timed_out = error.starts_with("timed out");
    last_error_ = fmt::format("{}: {}", wk.url, relay_.dropped_503() ? "answered 503" : error);
    if (relay_.streaming()) {
      finished_ = true;
      ++core_.routes[call_.route].errors["stream_interrupted"];
      spdlog::warn("{} {}: the stream from {} broke off: {}", call_.method, call_.route, wk.url, error);
      return relay_.broke_off("the worker's stream broke off: " + last_error_, *client_);
    }
    if (timed_out) {
      finished_ = true;
      ++core_.routes[call_.route].errors["timeout"];
      client_->respond(server::error_response(504, "no complete answer within --request-timeout-secs: " + last_error_));
      return;
    }
    if (!relay_.dropped_503()) core_.health.worker_failed(worker_);  // unreachable or dropped the connection
    if (!may_retry()) return give_up();
    ++wk.retries;
    ++core_.routes[call_.route].retries;
    spdlog::info("{} {}: retrying on another worker after {}", call_.method, call_.route, last_error_);
    attempt();
  }

  bool may_retry() const { return int(tried_.size()) < std::max(1, core_.options.retry_max_retries); }

  void give_up() {
    finished_ = true;
    const bool none = tried_.empty();
    ++core_.routes[call_.route].errors[none ? "no_healthy_worker" : "all_attempts_failed"];
    std::string message = none ? fmt::format("no healthy worker (of {}) to serve the request", core_.workers.size())
                               : fmt::format("no worker could serve the request after {} attempt{}; last: {}",
                                             tried_.size(), tried_.size() == 1 ? "" : "s", last_error_);
    spdlog::warn("{} {}: 503 {}", call_.method, call_.route, message);
    client_->respond(server::error_response(503, message));
  }

  void client_gone() {
    if (gone_ || finished_) return;  // (a client may close as the last bytes of its answer go out)
    gone_ = true;
    ++core_.client_disconnects;
    if (cancel_) cancel_();
  }

  RouterCore& core_;
  ProxyCall call_;
  std::shared_ptr<server::Responder> client_;
  std::vector<size_t> tried_;
  size_t worker_ = 0;
  bench::HttpCancel cancel_;
  ResponseRelay relay_;
  bool gone_ = false, finished_ = false;
  std::string last_error_;
};

}  // namespace

void start_proxy(RouterCore& core, ProxyCall call, std::shared_ptr<server::Responder> responder) {
  std::make_shared<Proxy>(core, std::move(call), std::move(responder))->start();
}

}  // namespace ds::router
