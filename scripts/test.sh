#!/usr/bin/env bash
# Builds everything and runs every CPU test (unit, golden, e2e). This is the command README.md and CI use.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
# Fuzz targets, bounded: each runs FUZZ_SECONDS (default 20) from its seed corpus.
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
