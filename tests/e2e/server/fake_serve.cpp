// The HTTP server and API over the scripted fake engine (tests/unit/server_fakes.h): the server
// layer alone under load, fast enough for hundreds of clients and for sanitizer builds.
// usage: fake_serve TOKENIZER_DIR [STEP_MS]; prints the URL, serves until SIGINT/SIGTERM.
#include <signal.h>

#include <cstdio>
#include <string>

#include "chat/encoder.h"
#include "server/api_server.h"
#include "server/http_server.h"
#include "server_fakes.h"
#include "util/log.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fake_serve TOKENIZER_DIR [STEP_MS]\n");
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  ds::init_logging("warning");
  auto tok = ds::tok::Tokenizer::load(argv[1]);
  auto cfg = ds::server::testing::FakeEngine::default_config();
  cfg.max_running_requests = 512;
  cfg.max_total_tokens = 16 * 4096;
  ds::server::testing::FakeEngine engine(cfg, &tok, argc > 2 ? std::stod(argv[2]) : 2.0);
  ds::server::ServerConfig sc;
  sc.served_model_name = "fake";
  sc.model_path = "fake";
  sc.context_length = cfg.context_length;
  sc.reasoning_parser = true;
  sc.tool_call_parser = "deepseekv32";
  ds::server::ApiServer api(sc, engine, tok, ds::chat::make_dsv32_encoder());
  ds::server::HttpServer http({"127.0.0.1", 0, 2},
                              [&](ds::server::HttpRequest&& r, std::shared_ptr<ds::server::Responder> resp) {
                                api.handle(std::move(r), std::move(resp));
                              });
  http.start();
  std::printf("serving on http://127.0.0.1:%u\n", unsigned(http.port()));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  engine.shutdown();
  http.stop(5.0);
  std::printf("stopped\n");
  return 0;
}
