// Every subcommand registers itself on the root CLI11 app; main() only dispatches.
#pragma once
#include <CLI/CLI.hpp>

namespace ds::cli {
// Adds all subcommands. Each one's callback runs the command and throws ds::Error on failure.
void register_all(CLI::App& app);

void register_model_commands(CLI::App& app);  // make-model, forward, generate
void register_bench(CLI::App& app);  // bench serving (cmd_bench.cpp)
void register_bench_engine(CLI::App* bench);  // bench engine (cmd_bench_engine.cpp)
void register_bench_model(CLI::App* bench);   // bench model (cmd_bench_model.cpp)
void register_eval(CLI::App& app);   // eval gsm8k|mmlu|gpqa (cmd_eval.cpp)
// tokenize / detokenize (cmd_tokenize.cpp)
void register_tokenize(CLI::App& app);
void register_chat_template(CLI::App& app);
void register_serve(CLI::App& app);  // serve (cmd_serve.cpp)
void register_router(CLI::App& app);  // router (cmd_router.cpp)
void register_memory_plan(CLI::App& app);  // memory-plan (cmd_memory_plan.cpp)
}  // namespace ds::cli
