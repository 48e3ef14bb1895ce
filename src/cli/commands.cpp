#include "cli/commands.h"

namespace ds::cli {
void register_all(CLI::App& app) {
  register_chat_template(app);
}
}  // namespace ds::cli
