// Runs the built dsserve binary for the CLI e2e tests.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace ds::bench::testing {

// `dsserve ARGS` from the build tree; returns its exit code, with stdout+stderr in `out`.
inline int run_cli(const std::string& args, std::string& out) {
  std::string cmd = std::string(DS_BINARY_DIR) + "/dsserve " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  out.clear();
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int rc = pclose(p);
  return WEXITSTATUS(rc);
}

}  // namespace ds::bench::testing
