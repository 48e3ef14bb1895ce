// Client overhead of `dsserve bench serving`: drives the instant-reply stub server with many
// concurrent streams from ONE client thread and reports the client thread's CPU time per request.
// Usage: bench_client_perf [requests=20000] [concurrency=1000] [tokens=16] [backend=sglang-oai-chat]
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/serving.h"
#include "fake_llm_server.h"

using namespace ds::bench;

namespace {
double thread_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}
}  // namespace

int main(int argc, char** argv) {
  int requests = argc > 1 ? std::atoi(argv[1]) : 20000;
  int concurrency = argc > 2 ? std::atoi(argv[2]) : 1000;
  int tokens = argc > 3 ? std::atoi(argv[3]) : 16;
  std::string backend = argc > 4 ? argv[4] : "sglang-oai-chat";
  testing::FakeLlmServer server;
  ServingOptions opt;
  opt.backend = backend;
  opt.url = Url::parse(server.url());
  opt.model = "fake-model";
  opt.max_concurrency = concurrency;
  opt.warmup_requests = 0;
  opt.progress = false;
  std::vector<DatasetRow> rows(requests, DatasetRow{"a b c d e f g h", 8, tokens});
  std::mt19937_64 rng(1);
  double cpu0 = thread_cpu_seconds();
  ServingRun run = run_serving(rows, opt, rng);
  double cpu = thread_cpu_seconds() - cpu0;
  int ok = 0;
  for (const auto& o : run.outputs) ok += o.success;
  std::printf("backend %s, %d requests x %d streamed tokens, max concurrency %d\n", backend.c_str(), requests, tokens,
              concurrency);
  std::printf("succeeded: %d, connections opened: %llu\n", ok, static_cast<unsigned long long>(run.connections));
  std::printf("wall: %.3f s -> %.0f requests/s, %.0f streamed tokens/s (stub server on another thread)\n",
              run.duration_s, requests / run.duration_s, double(requests) * tokens / run.duration_s);
  std::printf("client thread CPU: %.3f s -> %.1f us per request, %.2f us per token; one core saturates at %.0f requests/s\n",
              cpu, 1e6 * cpu / requests, 1e6 * cpu / (double(requests) * tokens), requests / cpu);
  return ok == requests ? 0 : 1;
}
