#include "router/pd_proxy.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "router/response_relay.h"
#include "router/router_core.h"
#include "server/api_error.h"
#include "server/json.h"

namespace ds::router {
namespace {

class PdProxy : public std::enable_shared_from_this<PdProxy> {
 public:
  PdProxy(RouterCore& core, ProxyCall call, std::shared_ptr<server::Responder> r)
      : core_(core), call_(std::move(call)), client_(std::move(r)) {}

  void start() {
    ++core_.routes[call_.route].requests;
    client_->on_disconnect([weak = weak_from_this(), &loop = core_.loop] {
      loop.post([weak] {
        if (auto self = weak.lock()) self->client_gone();
      });
    });
    try {
      body_json_ = server::Json::parse(call_.body);
    } catch (const std::exception&) {
    }
    if (!body_json_.is_object()) {
      finished_ = true;
      return client_->respond(server::error_response(400, "the request body must be a JSON object"));
    }
    attempt();
  }

 private:
  // The healthy, untried workers of one role.
  std::vector<Candidate> candidates(bool prefill) const {
    std::vector<Candidate> out;
    for (const Candidate& c : core_.workers.candidates(tried_))
      if ((c.worker < core_.options.prefill_count) == prefill) out.push_back(c);
    return out;
  }

  void attempt() {
    if (gone_) return;
    const std::vector<Candidate> pre = candidates(true), dec = candidates(false);
    if (pre.empty() || dec.empty()) return give_up(pre.empty() ? "prefill" : "decode");
    prefill_ = core_.policy->select(pre, call_.text);
    decode_ = core_.policy->select(dec, call_.text);
    ++attempts_;
    const uint64_t id = ++generation_;
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    server::Json body = body_json_;
    body["bootstrap_host"] = core_.workers[prefill_].address.host;
    body["bootstrap_port"] = core_.options.bootstrap_ports[prefill_];
    body["bootstrap_room"] = rng() >> 1;  // SGLang's rooms are below 2^63
    const std::string text = server::dump(body);
    decode_reply_.reset();
    prefill_body_.clear();
    prefill_status_ = 0;

    auto self = shared_from_this();
    bench::HttpRequestOptions ro;
    ro.headers = call_.headers;
    ro.timeout_s = core_.options.request_timeout_secs;
    for (size_t w : {prefill_, decode_}) {
      ++core_.workers[w].routed;
      ++core_.workers[w].in_flight;
    }
    bench::HttpCallbacks pc;
    pc.on_head = [self, id](int status, const bench::HttpHeaders&) {
      if (id == self->generation_) self->prefill_status_ = status;
    };
    pc.on_body = [self, id](std::string_view d) {
      if (id == self->generation_) self->prefill_body_.append(d);
    };
    pc.on_done = [self, id, w = prefill_](const std::string& error) { self->prefill_done(id, w, error); };
    prefill_cancel_ = core_.clients[prefill_]->request(call_.method, call_.target, text, std::move(pc), ro);
    bench::HttpCallbacks dc;
    dc.on_head = [self, id](int status, const bench::HttpHeaders& h) {
      if (id == self->generation_) self->decode_head(status, h);
    };
    dc.on_body = [self, id](std::string_view d) {
      if (id == self->generation_) self->decode_reply_.data(d, *self->client_);
    };
    dc.on_done = [self, id, w = decode_](const std::string& error) { self->decode_done(id, w, error); };
    decode_cancel_ = core_.clients[decode_]->request(call_.method, call_.target, text, std::move(dc), ro);
  }

  void decode_head(int status, const bench::HttpHeaders& h) {
    // A 503 is dropped (decode_done tries another pair).
    if (!decode_reply_.head(status, h, may_retry(), *client_) && decode_cancel_) decode_cancel_();
  }

  void prefill_done(uint64_t id, size_t w, const std::string& error) {
    --core_.workers[w].in_flight;
    if (id != generation_ || gone_ || finished_) return;
    prefill_cancel_ = nullptr;
    if (error.empty() && prefill_status_ == 200) return;  // its KV is on the way to the decode server
    ++core_.workers[w].errors;
    // The decode server waits for KV that will not come (it hears of the failure from the prefill server,
    // or times out): answer now unless its response has begun.
    if (decode_reply_.streaming()) return;
    const std::string why = error.empty() ? fmt::format("{} answered {}", core_.workers[w].url, prefill_status_)
                                          : fmt::format("{}: {}", core_.workers[w].url, error);
    drop_attempt(decode_cancel_);
    if (!error.empty() || prefill_status_ == 503) {  // unreachable or overloaded: another pair may do
      tried_.push_back(w);
      if (!error.empty() && !error.starts_with("timed out")) core_.health.worker_failed(w);
      return retry("prefill server " + why);
    }
    finished_ = true;  // the request itself failed there (e.g. 400): that answer is the client's
    server::HttpResponse r;
    r.status = prefill_status_;
    r.content_type = "application/json";
    r.body = prefill_body_;
    client_->respond(std::move(r));
  }

  void decode_done(uint64_t id, size_t w, const std::string& error) {
    --core_.workers[w].in_flight;
    if (id != generation_ || gone_ || finished_) return;
    decode_cancel_ = nullptr;
    if (error.empty() && !decode_reply_.dropped_503()) {
      finished_ = true;
      return decode_reply_.finish(*client_);
    }
    ++core_.workers[w].errors;
    const std::string why =
        fmt::format("decode server {}: {}", core_.workers[w].url, decode_reply_.dropped_503() ? "answered 503" : error);
    if (decode_reply_.streaming()) {
      finished_ = true;
      ++core_.routes[call_.route].errors["stream_interrupted"];
      spdlog::warn("{} {}: the stream broke off: {}", call_.method, call_.route, why);
      return decode_reply_.broke_off("the decode server's stream broke off: " + why, *client_);
    }
    drop_attempt(prefill_cancel_);  // its KV would go nowhere
    tried_.push_back(w);
    if (!decode_reply_.dropped_503() && !error.starts_with("timed out")) core_.health.worker_failed(w);
    retry(why);
  }

  // Ends this attempt: the callbacks of its exchanges are ignored from now on, and `other` is cancelled.
  void drop_attempt(bench::HttpCancel& other) {
    bench::HttpCancel c = std::move(other);
    other = nullptr;
    ++generation_;
    if (c) c();
  }

  void retry(const std::string& why) {
    last_error_ = why;
    if (!may_retry()) return give_up({});
    ++core_.routes[call_.route].retries;
    ++core_.workers[decode_].retries;
    spdlog::info("{} {}: retrying on another prefill/decode pair after {}", call_.method, call_.route, why);
    attempt();
  }

  bool may_retry() const { return attempts_ < std::max(1, core_.options.retry_max_retries); }

  void give_up(const std::string& missing_role) {
    finished_ = true;
    std::string message;
    if (!missing_role.empty() && attempts_ == 0) {
      ++core_.routes[call_.route].errors["no_healthy_worker"];
      message = fmt::format("no healthy {} server to serve the request", missing_role);
    } else {
      ++core_.routes[call_.route].errors["all_attempts_failed"];
      message = fmt::format("no prefill/decode pair could serve the request after {} attempt{}; last: {}", attempts_,
                            attempts_ == 1 ? "" : "s", last_error_.empty() ? "no healthy " + missing_role + " server left" : last_error_);
    }
    spdlog::warn("{} {}: 503 {}", call_.method, call_.route, message);
    client_->respond(server::error_response(503, message));
  }

  void client_gone() {
    if (gone_ || finished_) return;
    gone_ = true;
    ++core_.client_disconnects;
    if (prefill_cancel_) prefill_cancel_();
    if (decode_cancel_) decode_cancel_();
  }

  RouterCore& core_;
  ProxyCall call_;
  std::shared_ptr<server::Responder> client_;
  server::Json body_json_;
  std::vector<size_t> tried_;  // workers that failed this request (either role)
  size_t prefill_ = 0, decode_ = 0;
  int attempts_ = 0;
  uint64_t generation_ = 0;
  bench::HttpCancel prefill_cancel_, decode_cancel_;
  int prefill_status_ = 0;
  ResponseRelay decode_reply_;  // the decode server's response: the client's
  bool gone_ = false, finished_ = false;
  std::string prefill_body_, last_error_;
};

}  // namespace

void start_pd_proxy(RouterCore& core, ProxyCall call, std::shared_ptr<server::Responder> responder) {
  std::make_shared<PdProxy>(core, std::move(call), std::move(responder))->start();
}

}  // namespace ds::router
