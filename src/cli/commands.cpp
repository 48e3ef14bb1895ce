#include "cli/commands.h"

namespace ds::cli {
void register_all(CLI::App& app) {
  register_model_commands(app);
  register_bench(app);
  register_eval(app);
  register_tokenize(app);
  register_chat_template(app);
  register_serve(app);
  register_router(app);
  register_memory_plan(app);
}
}  // namespace ds::cli
