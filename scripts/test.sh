#!/usr/bin/env bash
# Builds everything and runs every test: the libFuzzer targets for a bounded time (FUZZ_SECONDS
# each, default 20), then ctest (unit, golden, e2e), then the server load test under sanitizers.
# This is the command README.md and CI use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
ctest --test-dir build --output-on-failure -j "$(nproc)"
# The server under AddressSanitizer/LeakSanitizer/UBSan: the e2e load test (streaming clients,
# random disconnects, clean shutdown) on its own build in build-asan.
scripts/sanitize-load.sh
