#!/usr/bin/env bash
# On the GPU machine (device tool, after scripts/device-prepare.sh here; carry .device-carry): the decode
# GEMV work of issue 18 in one call. Builds in Release, runs gpu_ops_check (every op against the CPU
# backend), `gpu_bench gemv` (the decode GEMV table against the HBM ceiling of hbm_ceiling.h and cuBLASLt),
# and with GEMV_MODEL=1 `dsserve bench model` decode on the full-width model (8 layers). Short summary last;
# logs in $OUT (the device tool brings them back) or /tmp/gpu-gemv.
#   GEMV_MODEL=1   also build dsserve and run bench model (decode at batch 1, 8, 32, 128; GEMV_STEPS steps,
#                  default 10; GEMV_PROFILE=1 adds the per-op profile)
#   GEMV_MOE=1     also run `gpu_bench moe`
#   GEMV_OPS=0     skip gpu_ops_check; GEMV_OPS=dense: its dense ops only (linear, the GEMV's forms, norms...)
#   GEMV_SASS=1    dump k_gemv's SASS to $OUT (where cuobjdump exists there)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-gemv}
mkdir -p "$LOG"
t0=$(date +%s)
targets="gpu_ops_check gpu_bench"
[ "${GEMV_MODEL:-0}" = 1 ] && targets="$targets dsserve"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target $targets >>"$LOG/build.log" 2>&1 ||
  { tail -40 "$LOG/build.log"; echo "gpu-gemv: BUILD FAILED"; exit 1; }
t1=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv,noheader >"$LOG/device.txt"
B=build-gpu/tests/gpu
ops=0
case "${GEMV_OPS:-1}" in
  0) echo "skipped" >"$LOG/ops.log" ;;
  dense) $B/gpu_ops_check dense >"$LOG/ops.log" 2>&1; ops=$? ;;
  *) $B/gpu_ops_check >"$LOG/ops.log" 2>&1; ops=$? ;;
esac
if [ "${GEMV_SASS:-0}" = 1 ]; then
  if command -v cuobjdump >/dev/null; then cuobjdump -sass "$(find build-gpu -name 'k_gemv.cu.o' | head -1)" >"$LOG/gemv_sass.txt" 2>&1
  else echo "no cuobjdump on this machine"; fi
fi
t2=$(date +%s)
$B/gpu_bench gemv >"$LOG/bench.log" 2>&1; bench=$?
[ "${GEMV_MOE:-0}" = 1 ] && { $B/gpu_bench moe >"$LOG/moe.log" 2>&1 || bench=$?; }
t3=$(date +%s)
model=0
if [ "${GEMV_MODEL:-0}" = 1 ]; then
  timeout 200 build-gpu/dsserve bench model --preset full-width --num-layers 8 --device cuda --batch 1,8,32,128 \
    --context 4096 --steps "${GEMV_STEPS:-10}" --warmup 2 --prefill '' ${GEMV_PROFILE:+--profile} --log-level warning \
    >"$LOG/model.txt" 2>&1; model=$?
fi
t4=$(date +%s)
echo "================ gpu-gemv ($(cat "$LOG/device.txt"), $(date -u +%F)) ================"
echo "build $((t1 - t0)) s, ops check $((t2 - t1)) s, gpu_bench $((t3 - t2)) s, bench model $((t4 - t3)) s"
grep -h "^FAIL\|FAILED\|error" "$LOG/ops.log" | head -20
grep -h "^== gpu_ops_check\|^skipped" "$LOG/ops.log" || echo "gpu_ops_check exit $ops"
grep -v "^$" "$LOG/bench.log"
[ -f "$LOG/moe.log" ] && grep -v "^$" "$LOG/moe.log"
[ -f "$LOG/model.txt" ] && grep -v "^$" "$LOG/model.txt" | tail -40
[ $ops = 0 ] && [ $bench = 0 ] && [ $model = 0 ]
