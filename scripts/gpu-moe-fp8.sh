#!/usr/bin/env bash
# On the GPU machine (device tool, after scripts/device-prepare.sh here; carry .device-carry): the grouped
# FP8 MoE path of issue 18 in one call. Builds gpu_ops_check and gpu_bench in Release, runs
# `gpu_ops_check moe` (routing and the three expert paths against the CPU backend and an FP8 reference),
# counts k_moe_fp8's wgmma instructions in its SASS (where cuobjdump exists there), then `gpu_bench moe`
# (grouped fp32, per-expert and grouped FP8 at T = 1..8192, against a cuBLASLt FP8 dense GEMM pair of
# equal FLOPs). Logs in $OUT (the device tool brings them back) or /tmp/gpu-moe-fp8; a short summary last.
#   MOE_OPS=0|moe|all   gpu_ops_check: skipped, its MoE checks (default), or every op
#   MOE_MODEL=1         also gpu_model_check (the models on the GPU, fast-mode graphs and chunks included)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-moe-fp8}
mkdir -p "$LOG"
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target gpu_ops_check gpu_bench $([ "${MOE_MODEL:-0}" = 1 ] && echo gpu_model_check) \
    >>"$LOG/build.log" 2>&1 ||
  { tail -40 "$LOG/build.log"; echo "gpu-moe-fp8: BUILD FAILED"; exit 1; }
t1=$(date +%s)
grep -h "warning" "$LOG/build.log" | grep -i "moe\|wgmma" | head -10
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv,noheader >"$LOG/device.txt"
B=build-gpu/tests/gpu
sass="no cuobjdump on this machine"
if command -v cuobjdump >/dev/null; then
  o=$(find build-gpu -name 'k_moe_fp8.cu.o' | head -1)
  cuobjdump -sass "$o" >"$LOG/moe_fp8_sass.txt" 2>&1
  sass="k_moe_fp8 SASS: $(grep -c QGMMA "$LOG/moe_fp8_sass.txt") QGMMA, $(grep -c 'HMMA\|IMMA' "$LOG/moe_fp8_sass.txt") HMMA/IMMA, $(grep -c 'LDL\|STL' "$LOG/moe_fp8_sass.txt") LDL/STL"
fi
ops=0
case "${MOE_OPS:-moe}" in
  0) echo skipped >"$LOG/ops.log" ;;
  all) $B/gpu_ops_check >"$LOG/ops.log" 2>&1; ops=$? ;;
  *) $B/gpu_ops_check moe >"$LOG/ops.log" 2>&1; ops=$? ;;
esac
t2=$(date +%s)
$B/gpu_bench moe >"$LOG/bench.log" 2>&1; bench=$?
model=0
if [ "${MOE_MODEL:-0}" = 1 ]; then $B/gpu_model_check >"$LOG/model.log" 2>&1; model=$?; fi
t3=$(date +%s)
echo "================ gpu-moe-fp8 ($(cat "$LOG/device.txt"), $(date -u +%F)) ================"
echo "build $((t1 - t0)) s, ops check $((t2 - t1)) s, gpu_bench + model check $((t3 - t2)) s; $sass"
grep -h "^FAIL\|error" "$LOG/ops.log" | head -20
grep -h "H=7168\|auto, \|GroupedFp8" "$LOG/ops.log" | cut -c1-160
grep -h "^== gpu_ops_check\|^skipped" "$LOG/ops.log" || echo "gpu_ops_check exit $ops"
if [ -f "$LOG/model.log" ]; then
  grep -h "^FAIL" "$LOG/model.log" | head -10
  grep -h "^== gpu_model_check" "$LOG/model.log" || echo "gpu_model_check exit $model"
fi
grep -v "^$" "$LOG/bench.log" | grep -v "moe grouped T=" | cut -c1-400
[ $ops = 0 ] && [ $model = 0 ] && [ $bench = 0 ]
