#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "util/error.h"

namespace ds {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("dsserve");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  std::string lv = level == "warn" ? "warning" : level;
  auto parsed = spdlog::level::from_str(lv);
  if (parsed == spdlog::level::off && lv != "off") fail("unknown --log-level '{}'", level);
  spdlog::set_level(parsed);
}

}  // namespace ds
