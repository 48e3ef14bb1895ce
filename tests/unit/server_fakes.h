// Test doubles for the server: a scripted runtime::Engine (a thread that gives every running
// request one token per step), and a Responder that records what an endpoint answered, with a
// serial executor standing in for the connection's strand.
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "server/http_types.h"
#include "tokenizer/tokenizer.h"

namespace ds::server::testing {

// What the fake generates for one request: one text piece per token.
struct FakeScript {
  std::vector<std::string> pieces;
  bool eos_at_end = true;  // after the last piece comes EOS (finish "stop"); else the pieces repeat
};
using ScriptFn = std::function<FakeScript(const runtime::GenerateRequest&)>;

// The default engine behaviour: echo the prompt's tokens (as text through the tokenizer), starting
// at an offset drawn from the seed when sampling (so seeds matter and greedy is fixed), until
// max_new_tokens. Stop strings, stop_token_ids, logprobs, abort, queue limits and page accounting
// behave like the real engine's contract (runtime/engine.h).
class FakeEngine : public runtime::Engine {
 public:
  explicit FakeEngine(runtime::EngineConfig cfg = default_config(), const tok::Tokenizer* tokenizer = nullptr,
                      double step_ms = 1.0)
      : cfg_(std::move(cfg)), tok_(tokenizer), step_ms_(step_ms) {
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeEngine() override { shutdown(); }

  static runtime::EngineConfig default_config() {
    runtime::EngineConfig c;
    c.page_size = 16;
    c.max_total_tokens = 16 * 256;
    c.max_running_requests = 64;
    c.max_queued_requests = 256;
    c.context_length = 4096;
    c.eos_token_ids = {1};
    return c;
  }

  void set_script(ScriptFn fn) {
    std::lock_guard lock(mu_);
    script_ = std::move(fn);
  }
  // While paused no request makes progress (aborts still finish requests).
  void pause(bool paused) {
    std::lock_guard lock(mu_);
    paused_ = paused;
  }

  void submit(runtime::GenerateRequest req, runtime::OutputSink sink) override {
    std::lock_guard lock(mu_);
    if (stopped_) throw runtime::RequestRejected(503, "the engine is shutting down");
    if (req.prompt.empty()) throw runtime::RequestRejected(400, "empty prompt");
    if (int64_t(req.prompt.size()) + req.max_new_tokens > cfg_.context_length)
      throw runtime::RequestRejected(400, "prompt + max_new_tokens is over the context length");
    if (int32_t(waiting_.size()) >= cfg_.max_queued_requests) throw runtime::RequestRejected(503, "the queue is full");
    submitted_.push_back(req);
    Live l;
    l.req = std::move(req);
    l.sink = std::move(sink);
    l.script = script_ ? script_(l.req) : echo_script(l.req);
    waiting_.push_back(std::move(l));
    cv_.notify_all();
  }

  void abort(const std::string& id) override {
    std::lock_guard lock(mu_);
    aborts_.push_back(id);
    cv_.notify_all();
  }

  // As the engine: answered at a step boundary (never while paused: a "long step"), on the engine thread.
  void flush_cache(std::function<void(bool)> done) override {
    {
      std::lock_guard lock(mu_);
      if (!stopped_) {
        pending_flushes_.push_back(std::move(done));
        cv_.notify_all();
        return;
      }
    }
    done(false);
  }

  runtime::EngineStats stats() const override {
    std::lock_guard lock(mu_);
    runtime::EngineStats s;
    s.running = int32_t(running_.size());
    s.queued = int32_t(waiting_.size());
    s.page_size = cfg_.page_size;
    s.num_pages = int32_t(cfg_.max_total_tokens / cfg_.page_size);
    for (const auto& l : running_)
      s.used_pages += int32_t((l.req.prompt.size() + l.generated + cfg_.page_size - 1) / cfg_.page_size);
    s.prompt_tokens_total = prompt_total_;
    s.generation_tokens_total = gen_total_;
    s.requests_total = finished_total_;
    return s;
  }

  const runtime::EngineConfig& config() const override { return cfg_; }

  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

  std::vector<runtime::GenerateRequest> submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  int flushes() const {
    std::lock_guard lock(mu_);
    return flushes_;
  }
  std::vector<std::string> aborted() const {
    std::lock_guard lock(mu_);
    return aborts_;
  }

 private:
  struct Live {
    runtime::GenerateRequest req;
    runtime::OutputSink sink;
    FakeScript script;
    size_t next_piece = 0;
    int32_t generated = 0;
    std::string text;  // all text
    size_t sent = 0;   // bytes of text delivered
    bool started = false;
  };

  FakeScript echo_script(const runtime::GenerateRequest& r) const {
    FakeScript s;
    s.eos_at_end = false;
    size_t n = r.prompt.size(), offset = 0;
    if (!r.sampling.greedy()) offset = size_t(r.sampling.seed.value_or(++unseeded_) % n);
    for (size_t k = 0; k < n; ++k) {
      int32_t id = r.prompt[(offset + k) % n];
      const int32_t one[] = {id};
      s.pieces.push_back(tok_ ? tok_->decode(one, r.skip_special_tokens) : std::to_string(id).append(" "));
    }
    return s;
  }

  // One token of `l`; true when it finished.
  bool step(Live& l, runtime::RequestOutput& out) {
    out.prompt_tokens = int32_t(l.req.prompt.size());
    const auto& eos = cfg_.eos_token_ids;
    int32_t token;
    std::string piece;
    bool at_eos = l.script.eos_at_end && l.next_piece >= l.script.pieces.size();
    if (at_eos) {
      token = eos.empty() ? 1 : eos[0];
    } else {
      size_t k = l.next_piece++ % std::max<size_t>(1, l.script.pieces.size());
      piece = l.script.pieces.empty() ? "" : l.script.pieces[k];
      token = 2 + int32_t(k % 200);  // ids the tests' tokenizers all define
    }
    ++l.generated;
    ++gen_total_;
    out.token_ids.push_back(token);
    out.completion_tokens = l.generated;
    if (l.req.sampling.logprobs) {
      runtime::TokenLogprob lp{token, -0.25f, {}};
      for (int32_t t = 0; t < l.req.sampling.top_logprobs; ++t) lp.top.emplace_back(2 + t, -0.25f - 0.5f * float(t));
      out.logprobs.push_back(std::move(lp));
    }
    const bool stop_token =
        std::find(l.req.stop_token_ids.begin(), l.req.stop_token_ids.end(), token) != l.req.stop_token_ids.end();
    if ((at_eos && !l.req.sampling.ignore_eos) || stop_token) {
      out.finished = true;
      out.finish_reason = runtime::FinishReason::Stop;
      out.matched_stop_token = token;
    } else {
      l.text += piece;
      for (const auto& s : l.req.stop) {
        size_t at = l.text.find(s);
        if (at == std::string::npos) continue;
        l.text.resize(l.req.no_stop_trim ? at + s.size() : at);
        out.finished = true;
        out.finish_reason = runtime::FinishReason::Stop;
        out.matched_stop_str = s;
        break;
      }
      if (!out.finished && l.generated >= l.req.max_new_tokens) {
        out.finished = true;
        out.finish_reason = runtime::FinishReason::Length;
      }
    }
    // Hold back text that may begin a stop string.
    size_t keep = 0;
    if (!out.finished)
      for (const auto& s : l.req.stop)
        for (size_t len = std::min(s.size() - 1, l.text.size()); len > keep; --len)
          if (l.text.compare(l.text.size() - len, len, s, 0, len) == 0) {
            keep = len;
            break;
          }
    size_t upto = l.text.size() - keep;
    if (upto > l.sent) {
      out.text = l.text.substr(l.sent, upto - l.sent);
      l.sent = upto;
    }
    return out.finished;
  }

  void finish_aborted(Live& l) {
    runtime::RequestOutput out;
    out.finished = true;
    out.finish_reason = runtime::FinishReason::Abort;
    out.prompt_tokens = int32_t(l.req.prompt.size());
    out.completion_tokens = l.generated;
    l.sink(std::move(out));
  }

  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait_for(lock, std::chrono::duration<double, std::milli>(step_ms_));
      if (stopped_) {
        for (auto* q : {&running_, &waiting_})
          for (auto& l : *q) finish_aborted(l);
        running_.clear();
        waiting_.clear();
        for (auto& f : pending_flushes_) f(false);
        return;
      }
      // Aborts first (at the step boundary, as the engine frees pages there).
      for (size_t a = handled_aborts_; a < aborts_.size(); ++a) {
        const std::string& id = aborts_[a];
        for (auto* q : {&running_, &waiting_}) {
          auto it = std::find_if(q->begin(), q->end(), [&](const Live& l) { return l.req.id == id; });
          if (it != q->end()) {
            finish_aborted(*it);
            ++finished_total_;
            q->erase(it);
          }
        }
      }
      handled_aborts_ = aborts_.size();
      while (!waiting_.empty() && int32_t(running_.size()) < cfg_.max_running_requests) {
        running_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
        prompt_total_ += int64_t(running_.back().req.prompt.size());
      }
      if (paused_) continue;
      for (auto& f : pending_flushes_) {
        const bool idle = running_.empty() && waiting_.empty();
        flushes_ += idle;
        f(idle);
      }
      pending_flushes_.clear();
      for (auto it = running_.begin(); it != running_.end();) {
        runtime::RequestOutput out;
        bool done = it->req.max_new_tokens == 0 ? true : step(*it, out);
        if (it->req.max_new_tokens == 0) {
          out.finished = true;
          out.finish_reason = runtime::FinishReason::Length;
          out.prompt_tokens = int32_t(it->req.prompt.size());
        }
        it->sink(std::move(out));
        if (done) {
          ++finished_total_;
          it = running_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  runtime::EngineConfig cfg_;
  const tok::Tokenizer* tok_;
  double step_ms_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  ScriptFn script_;
  bool paused_ = false, stopped_ = false;
  std::deque<Live> waiting_;
  std::deque<Live> running_;
  std::vector<std::string> aborts_;
  std::vector<std::function<void(bool)>> pending_flushes_;
  size_t handled_aborts_ = 0;
  std::vector<runtime::GenerateRequest> submitted_;
  mutable uint64_t unseeded_ = 0;
  int flushes_ = 0;
  int64_t prompt_total_ = 0, gen_total_ = 0, finished_total_ = 0;
};

// One thread running posted functions in order: the stand-in for a connection's strand.
class SerialExecutor {
 public:
  SerialExecutor() : thread_([this] { loop(); }) {}
  ~SerialExecutor() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }
  void post(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    q_.push_back(std::move(fn));
    cv_.notify_all();
  }
  // Runs fn on the executor and waits for it.
  void run(std::function<void()> fn) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    post([&] {
      fn();
      std::lock_guard l(m);
      done = true;
      cv.notify_all();
    });
    std::unique_lock l(m);
    cv.wait(l, [&] { return done; });
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !q_.empty(); });
      if (q_.empty() && stop_) return;
      auto fn = std::move(q_.front());
      q_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread thread_;
};

// Records the answer. Calls arrive on the executor (the endpoint runs there; outputs are posted).
class RecordingResponder : public Responder {
 public:
  explicit RecordingResponder(SerialExecutor& ex) : ex_(ex) {}
  void respond(HttpResponse r) override {
    std::function<void()> gone;  // dropped outside the lock: it may hold the job that holds us
    std::lock_guard lock(mu_);
    status = r.status;
    content_type = r.content_type;
    headers = r.headers;
    body = std::move(r.body);
    done = true;
    gone.swap(on_gone_);  // as the transport: a complete response no longer reports a disconnect
    cv_.notify_all();
  }
  void start_stream(int st, std::string type, HeaderList h) override {
    std::lock_guard lock(mu_);
    status = st;
    content_type = std::move(type);
    headers = std::move(h);
    streamed = true;
  }
  void send(std::string data) override {
    std::lock_guard lock(mu_);
    body += data;
    ++sends;
  }
  void end_stream() override {
    std::function<void()> gone;
    std::lock_guard lock(mu_);
    done = true;
    gone.swap(on_gone_);
    cv_.notify_all();
  }
  void on_disconnect(std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    on_gone_ = std::move(fn);
  }
  void post(std::function<void()> fn) override { ex_.post(std::move(fn)); }

  // The client goes away: the disconnect callback runs on the executor.
  void disconnect() {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      fn = std::move(on_gone_);
      on_gone_ = nullptr;
    }
    if (fn) ex_.run(fn);
  }
  bool wait(double seconds = 5) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return done; });
  }
  std::string text() {
    std::lock_guard lock(mu_);
    return body;
  }

  int status = 0;
  std::string content_type, body;
  HeaderList headers;
  bool streamed = false, done = false;
  int sends = 0;

 private:
  SerialExecutor& ex_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> on_gone_;
};

}  // namespace ds::server::testing
