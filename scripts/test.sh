#!/usr/bin/env bash
# Builds everything and runs every test: the libFuzzer targets for a bounded time (FUZZ_SECONDS
# each, default 20), then ctest (unit, golden, e2e). This is the command README.md and CI use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
ctest --test-dir build --output-on-failure -j "$(nproc)"
