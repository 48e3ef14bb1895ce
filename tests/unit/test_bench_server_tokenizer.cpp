// bench serving's tokenizer fallback: which names resolve to a tokenizer on this machine (a file, a
// directory, a Hugging Face hub name in the local cache) and which do not.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "bench/server_tokenizer.h"

namespace fs = std::filesystem;
using ds::bench::resolve_local_tokenizer;

namespace {
fs::path scratch() {
  fs::path d = fs::path(::testing::TempDir()) / ("server_tok_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "{}";
}
}  // namespace

TEST(ServerTokenizer, LocalFileAndDirectory) {
  fs::path d = scratch();
  touch(d / "model" / "tokenizer.json");
  EXPECT_EQ(resolve_local_tokenizer((d / "model").string()), (d / "model").string());
  EXPECT_EQ(resolve_local_tokenizer((d / "model" / "tokenizer.json").string()),
            (d / "model" / "tokenizer.json").string());
  fs::create_directories(d / "empty");
  EXPECT_EQ(resolve_local_tokenizer((d / "empty").string()), std::nullopt);  // a directory without one
  fs::remove_all(d);
}

TEST(ServerTokenizer, HubNameInTheLocalCache) {
  fs::path d = scratch();
  // Only this scratch cache is searched: HF_HOME and HOME point into it too.
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
  ::setenv("HF_HUB_CACHE", (d / "hub").c_str(), 1);
  ::setenv("HF_HOME", (d / "hf_home").c_str(), 1);
  ::setenv("HOME", (d / "home").c_str(), 1);
  EXPECT_EQ(resolve_local_tokenizer("deepseek-ai/DeepSeek-V3.2"), std::nullopt);  // not cached
  const fs::path snap = d / "hub" / "models--deepseek-ai--DeepSeek-V3.2" / "snapshots" / "abc123";
  touch(snap / "tokenizer.json");
  EXPECT_EQ(resolve_local_tokenizer("deepseek-ai/DeepSeek-V3.2"), snap.string());
  // A snapshot without tokenizer.json is skipped; names that are not hub names are not looked up.
  fs::create_directories(d / "hub" / "models--org--other" / "snapshots" / "r1");
  EXPECT_EQ(resolve_local_tokenizer("org/other"), std::nullopt);
  EXPECT_EQ(resolve_local_tokenizer("../escape/x"), std::nullopt);
  EXPECT_EQ(resolve_local_tokenizer("plainname"), std::nullopt);
  ::unsetenv("HF_HUB_CACHE");
  ::unsetenv("HF_HOME");
  ::setenv("HOME", home.c_str(), 1);
  fs::remove_all(d);
}
