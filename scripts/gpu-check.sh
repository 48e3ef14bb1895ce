#!/usr/bin/env bash
# On the GPU machine (device tool, after scripts/device-prepare.sh here and with .device-carry
# carried): builds in Release, runs the GPU checks and benchmarks, prints the table last.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >/dev/null
cmake --build build-gpu -j "$(nproc)" --target gpu_ops_check
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
build-gpu/tests/gpu/gpu_ops_check
