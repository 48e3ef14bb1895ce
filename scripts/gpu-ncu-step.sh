#!/usr/bin/env bash
# On the GPU machine (device tool; scripts/device-prepare.sh here first, .device-carry carried): where a decode
# step's device time goes, kernel by kernel (issue 18). Nsight Compute times every kernel of `bench model`'s
# decode steps alone (caches flushed: weights come from HBM as in a real step; `--clock-control none`), the
# steps run op by op (the same kernels a recorded step replays, without the launch gaps), and
# scripts/ncu_kernel_table.py sums them per kernel name per step.
#   NCU_LAYERS=8 (full-width: 3 dense + the rest MoE)  NCU_BATCH=1  NCU_CONTEXT=4096
#   NCU_ENV="DSSERVE_MOE_F16_X=0 ..." (A/B of a switch)  NCU_BIN (a built dsserve; default: build it)
# Output: the table on stdout and in $OUT/kernels.txt, the raw CSV in $OUT/ncu.csv.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-ncu}
mkdir -p "$LOG"
if [ -z "${NCU_BIN:-}" ]; then
  source scripts/device-env.sh
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON >"$LOG/build.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
fi
BIN=${NCU_BIN:-$PWD/build-gpu/dsserve}
WARMUP=1 STEPS=2
# shellcheck disable=SC2086  # NCU_ENV: assignments, word-split on purpose
env ${NCU_ENV:-} ncu --csv --page raw --metrics gpu__time_duration.sum --clock-control none --log-file "$LOG/ncu.csv" \
  "$BIN" bench model --preset full-width --num-layers "${NCU_LAYERS:-8}" --device cuda --batch "${NCU_BATCH:-1}" \
  --context "${NCU_CONTEXT:-4096}" --prefill '' --warmup $WARMUP --steps $STEPS --cuda-graph-max-bs 0 --copy-mib 256 \
  >"$LOG/bench-model.txt" 2>&1 || { tail -20 "$LOG/bench-model.txt"; exit 1; }
# Everything after the HBM ceiling's last read kernel is the decode steps (warm-up included, and the step
# bench model runs before its warm-up: steps are counted by the sampling kernel, one launch per step).
python3 scripts/ncu_kernel_table.py "$LOG/ncu.csv" --after read_stream --steps-from sample_kernel | tee "$LOG/kernels.txt"
