#include "runtime/kv_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace ds::runtime {

namespace {
std::string gib(int64_t bytes) {
  if (bytes < (1ll << 30)) return fmt::format("{:.1f} MiB", double(bytes) / double(1ll << 20));
  return fmt::format("{:.2f} GiB", double(bytes) / double(1ll << 30));
}
}  // namespace

KvPlan plan_kv_pool(const KvPlanInput& in) {
  DS_CHECK(in.page_size >= 1 && in.bytes_per_token > 0, "bad KV plan input (page size {}, {} bytes per token)",
           in.page_size, in.bytes_per_token);
  KvPlan p;
  const int64_t need = in.max_running_requests * in.context_length;  // more can never be used at once
  if (in.max_total_tokens > 0) {
    p.tokens = in.max_total_tokens;
    p.why = "--max-total-tokens";
  } else {
    DS_CHECK(in.mem_fraction > 0 && in.mem_fraction <= 1, "--mem-fraction-static must be in (0, 1], got {}",
             in.mem_fraction);
    DS_CHECK(in.available_bytes > 0, "cannot read the available memory; pass --max-total-tokens");
    const int64_t budget = int64_t(in.mem_fraction * double(in.available_bytes)) - in.reserved_bytes;
    DS_CHECK(budget > 0,
             "--mem-fraction-static {} of {} {} leaves nothing for the KV pool after {} of weights; raise it",
             in.mem_fraction, gib(in.available_bytes), in.memory_name, gib(in.reserved_bytes));
    p.tokens = budget / in.bytes_per_token;
    p.why = fmt::format("--mem-fraction-static {} of {} {}", in.mem_fraction, gib(in.available_bytes), in.memory_name);
    if (in.reserved_bytes > 0) p.why += fmt::format(" less {} of weights", gib(in.reserved_bytes));
    if (need > 0 && need < p.tokens) {
      p.tokens = need;
      p.why += fmt::format(", capped at max-running-requests {} x context length {}", in.max_running_requests,
                           in.context_length);
    }
  }
  p.tokens = p.tokens / in.page_size * in.page_size;
  DS_CHECK(p.tokens >= in.page_size,
           "the KV pool would hold {} tokens, less than one page of {}; raise --max-total-tokens or "
           "--mem-fraction-static",
           p.tokens, in.page_size);
  p.bytes = p.tokens * in.bytes_per_token;
  p.why = fmt::format("{} tokens = {} pages of {}, {} at {} bytes/token ({})", p.tokens, p.tokens / in.page_size,
                      in.page_size, gib(p.bytes), in.bytes_per_token, p.why);
  return p;
}

int64_t available_host_memory() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream ss(line.substr(13));
    int64_t kb = 0;
    ss >> kb;
    return kb * 1024;
  }
  return 0;
}

}  // namespace ds::runtime
