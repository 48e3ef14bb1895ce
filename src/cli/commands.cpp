#include "cli/commands.h"

namespace ds::cli {
void register_all(CLI::App& app) {
  (void)app;
}
}  // namespace ds::cli
