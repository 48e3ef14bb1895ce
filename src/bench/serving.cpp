#include "bench/serving.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <memory>

#include "util/error.h"
#include "util/progress.h"

namespace ds::bench {

using nlohmann::json;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string fetch_model_id(const Url& url) {
  HttpResponse r = http_fetch(url, "GET", "/v1/models", "", 30);
  if (r.ok()) {
    json j = json::parse(r.body, nullptr, false);
    if (!j.is_discarded() && j.contains("data") && j["data"].is_array() && !j["data"].empty())
      return j["data"][0].value("id", "");
  }
  fail("failed to fetch the model from {}/v1/models ({}); pass --model, or the right --host/--port/--base-url",
       url.str(), r.error.empty() ? fmt::format("HTTP {} {}", r.status, r.reason) : r.error);
}

namespace {

// One request in flight: feeds body lines to the backend's reader and fills `out` at the end.
struct Call {
  ResponseReader reader;
  RequestOutput& out;
  int status = 0;
  std::string reason, partial, error_body, parse_error;
  Call(Api api, bool stream, int output_len, double st, RequestOutput& o) : reader(api, stream, output_len, st), out(o) {}

  void line(std::string_view l, double now) {
    if (!parse_error.empty()) return;
    try {
      reader.on_line(l, now);
    } catch (const std::exception& e) {
      parse_error = e.what();
    }
  }
  void body(std::string_view data) {
    if (status != 200) {
      error_body.append(data);
      return;
    }
    double now = now_seconds();
    size_t pos = 0;
    while (true) {
      size_t nl = data.find('\n', pos);
      if (nl == std::string_view::npos) break;
      if (partial.empty()) {
        line(data.substr(pos, nl - pos), now);
      } else {
        partial.append(data.substr(pos, nl - pos));
        line(partial, now);
        partial.clear();
      }
      pos = nl + 1;
    }
    partial.append(data.substr(pos));
  }
  void done(const std::string& err) {
    double now = now_seconds();
    if (!err.empty()) {
      out.error = err;
    } else if (status != 200) {
      out.error = reason + ": " + error_body;  // sglang: response.reason + ": " + response.text()
    } else {
      if (!partial.empty()) line(partial, now);
      if (parse_error.empty()) {
        try {
          int prompt_len = out.prompt_len;
          reader.finish(out, now);
          out.prompt_len = prompt_len;
        } catch (const std::exception& e) {
          parse_error = e.what();
        }
      }
      if (!parse_error.empty()) {
        out.success = false;
        out.error = "bad response body: " + parse_error;
      }
    }
  }
};

void start_call(HttpClient& client, const BackendSpec& spec, const ServingOptions& opt, const DatasetRow& row,
                int output_len, RequestOutput& out, std::function<void()> on_complete) {
  std::string payload = build_payload(spec.api, opt.model, row, output_len, opt.request);
  out.prompt_len = row.prompt_len;
  double st = now_seconds();
  out.start_time = st;
  auto call = std::make_shared<Call>(spec.api, opt.request.stream, output_len, st, out);
  client.request("POST", spec.path, std::move(payload),
                 {[call](int status, std::string_view reason) {
                    call->status = status;
                    call->reason = reason;
                  },
                  [call](std::string_view data) { call->body(data); },
                  [call, on_complete = std::move(on_complete)](const std::string& err) {
                    call->done(err);
                    on_complete();
                  }});
}

std::optional<double> accept_length_of(const json& info) {
  const json* j = &info;
  if (j->contains("decode") && (*j)["decode"].is_array() && !(*j)["decode"].empty()) j = &(*j)["decode"][0];
  if (j->contains("internal_states") && (*j)["internal_states"].is_array() && !(*j)["internal_states"].empty()) {
    const auto& s = (*j)["internal_states"][0];
    if (s.contains("avg_spec_accept_length") && s["avg_spec_accept_length"].is_number())
      return s["avg_spec_accept_length"].get<double>();
  }
  return std::nullopt;
}

}  // namespace

ServingRun run_serving(const std::vector<DatasetRow>& rows, const ServingOptions& opt, std::mt19937_64& rng) {
  DS_CHECK(!rows.empty(), "the dataset has no requests");
  BackendSpec spec = backend_spec(opt.backend);
  raise_fd_limit();
  EventLoop loop;
  HttpClient client(loop, opt.url);
  ServingRun run;

  // Warmup: the first row, at most 32 new tokens, all at once and outside the concurrency cap.
  if (opt.warmup_requests > 0) {
    std::printf("Starting warmup with %d sequences...\n", opt.warmup_requests);
    std::fflush(stdout);
    std::vector<RequestOutput> warm(opt.warmup_requests);
    for (auto& w : warm) start_call(client, spec, opt, rows[0], std::min(rows[0].output_len, 32), w, [] {});
    loop.run();
    bool any = false;
    for (const auto& w : warm) any = any || w.success;
    if (!any)
      fail("Warmup failed - Please make sure benchmark arguments are correctly specified. Error: {}", warm[0].error);
    std::printf("Warmup completed with %d sequences. Starting main benchmark run...\n", opt.warmup_requests);
    std::fflush(stdout);
  }

  run.outputs.resize(rows.size());
  std::unique_ptr<Progress> progress;
  if (opt.progress) progress = std::make_unique<Progress>("requests", rows.size());
  std::deque<size_t> waiting;  // arrived but held back by --max-concurrency, FIFO like asyncio.Semaphore
  int inflight = 0;
  std::function<void(size_t)> launch = [&](size_t i) {
    ++inflight;
    start_call(client, spec, opt, rows[i], rows[i].output_len, run.outputs[i], [&] {
      --inflight;
      if (progress) progress->add(1);
      if (!waiting.empty()) {
        size_t next = waiting.front();
        waiting.pop_front();
        launch(next);
      }
    });
  };
  auto arrive = [&](size_t i) {
    if (opt.max_concurrency > 0 && inflight >= opt.max_concurrency) waiting.push_back(i);
    else launch(i);
  };

  double start = now_seconds();
  if (std::isinf(opt.request_rate)) {
    for (size_t i = 0; i < rows.size(); ++i) arrive(i);
  } else {
    // Poisson process: exponential gaps with mean 1/rate; request 0 goes at once.
    std::exponential_distribution<double> gap(opt.request_rate);
    double t = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i == 0) arrive(0);
      else loop.after(start + t - now_seconds(), [&arrive, i] { arrive(i); });
      t += gap(rng);
    }
  }
  loop.run();
  if (progress) progress->finish();

  // Like sglang, the server-info request falls inside the measured duration.
  HttpResponse info = http_fetch(opt.url, "GET", "/get_server_info", "", 10);
  if (info.ok()) {
    json j = json::parse(info.body, nullptr, false);
    if (!j.is_discarded()) {
      run.server_info = j;
      if (opt.backend.find("sglang") != std::string::npos) run.accept_length = accept_length_of(j);
    }
  }
  run.duration_s = now_seconds() - start;
  run.connections = client.connections_opened();
  return run;
}

}  // namespace ds::bench
