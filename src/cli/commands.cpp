#include "cli/commands.h"

namespace ds::cli {
void register_all(CLI::App& app) {
  register_model_commands(app);
  register_bench(app);
  register_eval(app);
  register_tokenize(app);
}
}  // namespace ds::cli
