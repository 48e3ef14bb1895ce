#!/usr/bin/env bash
# Configures and builds dsserve into build/ (Release). Extra args go to cmake, e.g. -DDSSERVE_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
[ -f build/CMakeCache.txt ] || cmake -S . -B build "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$(nproc)"
