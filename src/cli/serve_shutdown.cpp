#include "cli/serve_shutdown.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "runtime/engine.h"
#include "server/api_server.h"
#include "server/http_server.h"

namespace ds::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Requests the server is still answering: HTTP generation jobs and whatever the engine holds.
size_t in_flight(server::ApiServer& api, runtime::Engine& engine) {
  const runtime::EngineStats s = engine.stats();
  return api.state().live.size() + size_t(s.running) + size_t(s.queued);
}

// How long Engine::shutdown may take: it cancels the running step between layers, so this is one
// layer of the longest step plus the final deliveries; past it the process ends anyway.
constexpr double kEngineStopBoundS = 30;

}  // namespace

int shut_down_server(server::ApiServer& api, runtime::Engine& engine, server::HttpServer& http, double drain_s) {
  api.begin_drain();  // new generation requests and /health: 503 from now on
  if (drain_s > 0) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(drain_s);
    size_t n = in_flight(api, engine);
    if (n > 0) spdlog::info("draining: {} request(s) in flight, up to {} s (--shutdown-timeout)", n, drain_s);
    while ((n = in_flight(api, engine)) > 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (n > 0) spdlog::info("drain deadline reached: aborting {} request(s)", n);
  }
  // Aborts what is left (open responses end with finish_reason abort). Bounded: a step that does not
  // end (a stuck device) must not keep the process alive after SIGTERM.
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> stopped = done->get_future();
  std::thread([&engine, done] {  // detached: a future of std::async would wait for it when given up
    engine.shutdown();
    done->set_value();
  }).detach();
  if (stopped.wait_for(std::chrono::duration<double>(kEngineStopBoundS)) != std::future_status::ready) {
    spdlog::error("the engine did not stop within {} s (a step that does not end); exiting without it",
                  kEngineStopBoundS);
    spdlog::default_logger()->flush();
    return 1;  // the caller _Exit()s: the engine thread still uses the model
  }
  http.stop(5.0);  // lets the final chunks out, then closes every connection
  return 0;
}

}  // namespace ds::cli
