// Every subcommand registers itself on the root CLI11 app; main() only dispatches.
#pragma once
#include <CLI/CLI.hpp>

namespace ds::cli {
// Adds all subcommands. Each one's callback runs the command and throws ds::Error on failure.
void register_all(CLI::App& app);

void register_chat_template(CLI::App& app);
}  // namespace ds::cli
