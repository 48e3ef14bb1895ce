#include "bench/download.h"

#include <cstdlib>
#include <filesystem>

#include "util/error.h"

namespace ds::bench {

namespace {
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

std::string ensure_file(const std::string& local, const std::string& url, const std::string& what) {
  namespace fs = std::filesystem;
  if (fs::exists(local)) return local;
  std::string hint = fmt::format("{} not found: put it at {} (from {})", what, local, url);
  if (const char* off = std::getenv("DSSERVE_OFFLINE"); off && *off) throw Error(hint);
  if (std::system("command -v curl >/dev/null 2>&1") != 0) throw Error(hint + "; curl is not installed to fetch it");
  std::error_code ec;
  if (fs::path(local).has_parent_path()) fs::create_directories(fs::path(local).parent_path(), ec);
  std::string part = local + ".part";
  std::fprintf(stderr, "Downloading from %s to %s\n", url.c_str(), local.c_str());
  // --connect-timeout makes an offline machine fail in seconds instead of hanging.
  std::string cmd = fmt::format("curl -fsSL --connect-timeout 5 --retry 0 -o {} {}", shell_quote(part), shell_quote(url));
  if (std::system(cmd.c_str()) != 0) {
    fs::remove(part, ec);
    throw Error(hint + "; downloading it failed (no network?)");
  }
  fs::rename(part, local);
  return local;
}

}  // namespace ds::bench
