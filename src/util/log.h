// Logging goes through spdlog; this header only fixes the project's defaults.
#pragma once
#include <spdlog/spdlog.h>

#include <string>

namespace ds {
// level: trace|debug|info|warning|error|critical (sglang's --log-level names). Logs go to stderr.
void init_logging(const std::string& level);
}  // namespace ds
