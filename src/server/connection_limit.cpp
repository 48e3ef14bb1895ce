// The default of --limit-concurrency, from the process's open-file limit.
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>

#include "server/http_server.h"

namespace ds::server {

size_t default_connection_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = std::min<rlim_t>(lim.rlim_max, rlim_t(1) << 20);
    if (raised.rlim_cur > lim.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  size_t open = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::end(it);
       it.increment(ec))
    ++open;
  const size_t total = lim.rlim_cur == RLIM_INFINITY ? (size_t(1) << 20) : size_t(lim.rlim_cur);
  const size_t reserve = std::min<size_t>(64, total / 4);  // files the process may still open
  return total > open + reserve + 8 ? total - open - reserve : 8;
}

}  // namespace ds::server
