#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) in build-fuzz/ and runs each one for
# SECONDS (default 30) from its seed corpus in tests/fuzz/corpus/NAME (if any). Any crash fails.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-30}
CXX=${FUZZ_CXX:-clang++}
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
[ -f build-fuzz/CMakeCache.txt ] || cmake -S . -B build-fuzz "${GEN[@]}" -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSSERVE_FUZZ=ON -DDSSERVE_TESTS=OFF -DDSSERVE_CUDA=OFF
cmake --build build-fuzz -j "$(nproc)" --target fuzzers
shopt -s nullglob
for f in build-fuzz/fuzz/*; do
  name=$(basename "$f")
  work=$(mktemp -d)
  seeds=(); [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
  echo "fuzzing $name for ${SECONDS_PER_TARGET}s"
  "$f" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 "$work" "${seeds[@]}" 2>&1 | tail -4
  rm -rf "$work"
done
