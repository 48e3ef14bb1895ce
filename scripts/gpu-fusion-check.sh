#!/usr/bin/env bash
# On the GPU machine (device tool), one call: the fused attention-block kernels (k_kv_fused.cu:
# mla_kv_write, indexer_key_write, mla_absorb_q_rope; branch decode-fusion) checked and timed.
#   1. build (Release, CUDA, tests): gpu_ops_check, gpu_model_check, dsserve;
#   2. `gpu_ops_check fused` (the fused kernels against the separate ones, bitwise, and against the CPU),
#      then `gpu_ops_check dense` (norms, rope, copy_cols, cache writes, the PDL chain, the fused checks
#      again, linear; the rope kernel's rounding changed with this branch), or the whole gpu_ops_check
#      with FUSION_OPS=all;
#   3. gpu_model_check (golden models on the GPU, step graphs: captured steps with the fused kernels, and
#      the demo widths' forwards with the fusion on and off, bitwise);
#   4. `dsserve bench model --preset full-width --num-layers 8 --batch 1,8,32 --context 4096` with
#      DSSERVE_FUSED_KV=0, =1 and =0 again (the first pair's order reversed by the third: drift shows);
#      FUSION_BENCH_RUNS=2 for the first two only.
# About 250-300 s after the build. Run scripts/device-prepare.sh here first and carry .device-carry (the
# PCRE2 / UCX headers dsserve builds against). Logs: one tarball $OUT/all.tgz (or /tmp/gpu-fusion), saved
# after every step, so a call cut short still returns what ran; a summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-fusion}
L=$(mktemp -d)
mkdir -p "$LOG" .device-carry
source scripts/device-env.sh
save() { tar czf "$LOG/all.tgz" -C "$L" . 2>/dev/null; }
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$L/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target gpu_ops_check gpu_model_check dsserve >>"$L/build.log" 2>&1
build=$?
t1=$(date +%s)
if [ $build -ne 0 ]; then tail -40 "$L/build.log"; echo "BUILD FAILED"; save; exit 1; fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$L/device.txt"
B=build-gpu/tests/gpu
summary_of() { grep -h '^== ' "$1" 2>/dev/null || echo "no summary (exit $2)"; }

timeout 120 $B/gpu_ops_check fused >"$L/ops-fused.log" 2>&1
fused=$?
save
echo "gpu_ops_check fused: $(summary_of "$L/ops-fused.log" $fused)"
grep -h "FAILED:" "$L/ops-fused.log" | head -20
ops_mode=dense
[ "${FUSION_OPS:-dense}" = all ] && ops_mode=""
timeout 240 $B/gpu_ops_check $ops_mode >"$L/ops.log" 2>&1
ops=$?
save
echo "gpu_ops_check ${ops_mode:-(all)}: $(summary_of "$L/ops.log" $ops)"
grep -h "FAILED:" "$L/ops.log" | head -20
timeout 240 $B/gpu_model_check >"$L/model.log" 2>&1
model=$?
save
echo "gpu_model_check: $(summary_of "$L/model.log" $model)"
grep -h "FAILED:" "$L/model.log" | head -20
grep -h "model fused KV = separate" "$L/model.log" | head -12
t2=$(date +%s)

runs="0 1 0"
[ "${FUSION_BENCH_RUNS:-3}" = 2 ] && runs="0 1"
i=0
for f in $runs; do
  i=$((i + 1))
  DSSERVE_FUSED_KV=$f timeout 180 build-gpu/dsserve bench model --preset full-width --num-layers 8 --device cuda \
    --batch 1,8,32 --context 4096 --prefill '' --steps 20 --profile --csv "$L/bench-$i-fused$f.csv" \
    >"$L/bench-$i-fused$f.log" 2>&1
  echo "bench model run $i DSSERVE_FUSED_KV=$f: exit $?"
  save
done
t3=$(date +%s)

echo
echo "================ gpu-fusion-check ($(head -1 "$L/device.txt")) ================"
echo "build $((t1 - t0)) s, checks $((t2 - t1)) s, benchmarks $((t3 - t2)) s"
for f in "$L"/bench-*.log; do
  echo "-- $(basename "$f")"
  # the decode rows (batch, context, step time, ...) and the profiled ops of the fused path / the separate one
  grep -h -i "decode\|^ *[0-9]\+ \+4096" "$f" | head -8
  grep -h "mla_kv_write\|indexer_key_write\|mla_absorb_q\|copy_cols\|cache_write\|rope\|layernorm\|rmsnorm" "$f" | head -12
done
printf "\n| check | result |\n|---|---|\n"
printf "| gpu_ops_check fused | %s |\n" "$(summary_of "$L/ops-fused.log" $fused)"
printf "| gpu_ops_check %s | %s |\n" "${ops_mode:-all}" "$(summary_of "$L/ops.log" $ops)"
printf "| gpu_model_check | %s |\n" "$(summary_of "$L/model.log" $model)"
save
[ $fused = 0 ] && [ $ops = 0 ] && [ $model = 0 ]
