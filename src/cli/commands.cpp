#include "cli/commands.h"

namespace ds::cli {
void register_all(CLI::App& app) {
  register_tokenize(app);
}
}  // namespace ds::cli
