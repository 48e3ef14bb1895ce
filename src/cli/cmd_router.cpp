// `dsserve router`: sglang_router's launch_router (plain, and PD with --pd-disaggregation), with its flag names
// and defaults (README.md, "Router", lists what differs).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "cli/commands.h"
#include "router/router.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::cli {
namespace {

struct RouterFlags {
  router::RouterOptions o;
  std::string log_level = "info";
  bool disable_retries = false;
  bool pd_disaggregation = false;
  std::vector<std::string> prefill, decode;  // --prefill URL [BOOTSTRAP_PORT] ... / --decode URL ...
};

// sglang_router's PD workers: each --prefill is a URL, optionally followed by its bootstrap port ("none" or
// left out: 8998, the prefill server's default); the decode servers follow the prefill servers.
void set_pd_workers(RouterFlags& f) {
  DS_CHECK(f.o.worker_urls.empty(), "--pd-disaggregation takes --prefill and --decode instead of --worker-urls");
  DS_CHECK(!f.prefill.empty() && !f.decode.empty(), "--pd-disaggregation needs --prefill URL [BOOTSTRAP_PORT] and --decode URL");
  for (size_t i = 0; i < f.prefill.size(); ++i) {
    const std::string& a = f.prefill[i];
    const bool is_port = !a.empty() && (a == "none" || a.find_first_not_of("0123456789") == std::string::npos);
    DS_CHECK(!is_port || i > 0, "--prefill {}: a URL comes first, then its bootstrap port", a);
    if (!is_port) {
      f.o.worker_urls.push_back(a);
      f.o.bootstrap_ports.push_back(8998);
    } else if (a != "none") {
      const int port = std::stoi(a.size() > 6 ? "0" : a);
      DS_CHECK(port >= 1 && port <= 65535, "--prefill {} {}: the bootstrap port must be in [1, 65535]", f.prefill[i - 1], a);
      f.o.bootstrap_ports.back() = port;
    }
  }
  f.o.prefill_count = f.o.worker_urls.size();
  for (const auto& u : f.decode) f.o.worker_urls.push_back(u);
  f.o.pd_disaggregation = true;
}

void add_flags(CLI::App* cmd, RouterFlags& f) {
  auto& o = f.o;
  cmd->add_option("--worker-urls", o.worker_urls, "Worker URLs (http://host:port of `dsserve serve` replicas)")
      ->expected(1, -1);
  cmd->add_option("--host", o.host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", o.port, "Port to bind (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--policy", o.policy.name, "Load balancing policy")
      ->check(CLI::IsMember({"random", "round_robin", "cache_aware", "power_of_two"}))
      ->capture_default_str();
  cmd->add_option("--cache-threshold", o.policy.cache_threshold,
                  "cache_aware: route by prefix when the matched share of the text exceeds this (0..1)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--balance-abs-threshold", o.policy.balance_abs_threshold,
                  "cache_aware: balance by load when max-min in-flight > this AND max > min * rel threshold")
      ->capture_default_str();
  cmd->add_option("--balance-rel-threshold", o.policy.balance_rel_threshold, "cache_aware: see --balance-abs-threshold")
      ->capture_default_str();
  cmd->add_option("--eviction-interval-secs,--eviction-interval", o.eviction_interval_secs,
                  "cache_aware: seconds between trimming the trees to --max-tree-size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-tree-size", o.policy.max_tree_size, "cache_aware: bytes of text per worker tree")
      ->capture_default_str();
  cmd->add_option("--max-payload-size", o.max_payload_size, "Largest request body in bytes (413 beyond)")
      ->capture_default_str();
  cmd->add_option("--api-key", o.api_key,
                  "Required from clients (Authorization: Bearer KEY, 401 otherwise) and sent to the workers; "
                  "without it the client's Authorization passes through");
  cmd->add_option("--request-timeout-secs", o.request_timeout_secs, "Limit on one upstream exchange, streaming included")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--retry-max-retries,--max-retries", o.retry_max_retries,
                  "Attempts per request in all, each on another worker (1: no retry)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--disable-retries", f.disable_retries, "One attempt per request (--retry-max-retries 1)");
  cmd->add_option("--health-check-interval-secs", o.health.interval_secs, "Seconds between health checks of a worker")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--health-check-timeout-secs", o.health.timeout_secs, "Limit on one health check")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--health-failure-threshold", o.health.failure_threshold,
                  "Failed checks in a row that take a worker out of rotation")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--health-success-threshold", o.health.success_threshold,
                  "Passed checks in a row that bring a worker back")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--health-check-endpoint", o.health.endpoint, "Path of the health check")->capture_default_str();
  cmd->add_option("--random-seed", o.policy.seed, "Seed of the random and power_of_two policies (0: random)")
      ->capture_default_str();
  cmd->add_option("--log-level", f.log_level, "debug, info, warning or error")->capture_default_str();
  cmd->add_flag("--pd-disaggregation", f.pd_disaggregation,
                "Prefill-decode disaggregation: requests go to a --prefill and a --decode server");
  cmd->add_option("--prefill", f.prefill, "A prefill server: URL [BOOTSTRAP_PORT] (repeat per server; port default 8998)")
      ->expected(1, 2);
  cmd->add_option("--decode", f.decode, "A decode server: URL (repeat per server)");
}

void run_router(RouterFlags& f) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread exists; sigwait() takes them
  init_logging(f.log_level);
  if (f.pd_disaggregation) set_pd_workers(f);
  DS_CHECK(f.pd_disaggregation || (f.prefill.empty() && f.decode.empty()), "--prefill and --decode need --pd-disaggregation");
  if (f.disable_retries) f.o.retry_max_retries = 1;
  router::Router r(f.o);
  r.start();
  const auto& o = f.o;
  spdlog::info("dsserve router on http://{}:{}: {} worker{}, policy {}, {} attempt{} per request, API key {}", o.host,
               r.port(), o.worker_urls.size(), o.worker_urls.size() == 1 ? "" : "s", o.policy.name, o.retry_max_retries,
               o.retry_max_retries == 1 ? "" : "s", o.api_key.empty() ? "passed through" : "required");
  for (size_t i = 0; i < o.worker_urls.size(); ++i)
    if (!o.pd_disaggregation) spdlog::info("  worker {}", o.worker_urls[i]);
    else if (i < o.prefill_count) spdlog::info("  prefill {} (bootstrap port {})", o.worker_urls[i], o.bootstrap_ports[i]);
    else spdlog::info("  decode {}", o.worker_urls[i]);
  spdlog::info("The router is fired up and ready to roll!");
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("{}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  r.stop(2.0);
  spdlog::info("stopped");
}

}  // namespace

void register_router(CLI::App& app) {
  auto* cmd = app.add_subcommand("router", "Route requests over several `dsserve serve` workers (sglang_router's flags)");
  auto flags = std::make_shared<RouterFlags>();
  add_flags(cmd, *flags);
  cmd->callback([flags] { run_router(*flags); });
}

}  // namespace ds::cli
