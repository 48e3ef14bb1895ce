#!/usr/bin/env bash
# The server under AddressSanitizer + UBSan + LeakSanitizer: builds dsserve into build-asan and runs
# the loopback load test (streaming clients, random disconnects) at a smaller size, then a clean
# SIGTERM shutdown, where LeakSanitizer reports anything not freed. Part of scripts/test.sh.
#   scripts/sanitize-load.sh [clients=64]
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$PWD")}"
  GEN+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
[ -f build-asan/CMakeCache.txt ] || cmake -S . -B build-asan "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDSSERVE_SANITIZE=ON -DDSSERVE_CUDA=OFF >/dev/null
cmake --build build-asan -j "$(nproc)" --target dsserve
mkdir -p build-asan/load
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_WAIT_POLICY=passive
bash tests/e2e/load/run_load.sh "$PWD/build-asan/dsserve" "$PWD" "$PWD/build-asan/load" "${1:-64}" --encoder dsv32
