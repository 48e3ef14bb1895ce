#!/usr/bin/env bash
# On the GPU machine (device tool; scripts/device-prepare.sh here first, .device-carry carried): what each
# kernel of a recorded decode step costs on the step's critical path (issue 18). Builds dsserve with
# -DDSSERVE_KERNEL_TRACE=ON (backend/cuda/kernel_trace.h: block 0 of every kernel notes the global timer
# around its pdl_prologue wait) and runs `bench model`'s recorded steps; a kernel's cost is the time from
# its wait's end to the next kernel's, which, unlike Nsight Compute's kernels-alone times, counts the
# overlap programmatic dependent launch gives. The trace build's steps run ~5% slower than the normal
# build's (a timer read and an atomic per kernel, a sync per replay): use it to rank kernels, and `bench
# model` on a normal build for step times.
#   TRACE_LAYERS=8 (full-width: 3 dense + the rest MoE)  TRACE_BATCH=1,8  TRACE_CONTEXT=4096
#   TRACE_ENV="DSSERVE_MOE_F16_X=0 ..." (A/B of a switch)
# Output: $OUT/trace.txt (per captured step: every kernel in order with its cost and lead, then the sums
# by kernel name), its "by kernel" tables on stdout.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-trace}
mkdir -p "$LOG"
source scripts/device-env.sh
cmake -S . -B build-trace -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=OFF \
  -DDSSERVE_KERNEL_TRACE=ON >"$LOG/build-trace.log" 2>&1 &&
  cmake --build build-trace -j "$(nproc)" --target dsserve >>"$LOG/build-trace.log" 2>&1 ||
  { tail -30 "$LOG/build-trace.log"; exit 1; }
# shellcheck disable=SC2086  # TRACE_ENV: assignments, word-split on purpose
env ${TRACE_ENV:-} DSSERVE_KERNEL_TRACE_OUT="$LOG/trace.txt" build-trace/dsserve bench model --preset full-width \
  --num-layers "${TRACE_LAYERS:-8}" --device cuda --batch "${TRACE_BATCH:-1,8}" --context "${TRACE_CONTEXT:-4096}" \
  --prefill '' --steps 20 >"$LOG/bench-trace.txt" 2>&1 || { tail -20 "$LOG/bench-trace.txt"; exit 1; }
grep -E "^# captured|^# by kernel|^ +[0-9]+\.[0-9]+  " "$LOG/trace.txt"
