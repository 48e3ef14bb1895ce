#!/usr/bin/env bash
# On the GPU machine (device tool; scripts/device-prepare.sh run first, .device-carry carried): decode with
# the BF16 and the FP8 KV cache side by side, in one call (docs/PERF.md, "FP8 KV cache").
#   1. registers / spills of the kernels that read the cache (cuobjdump --dump-resource-usage);
#   2. FP8_CHECKS=1: gpu_ops_check attention (GPU vs CPU, FP8 pools included) and gpu_model_check;
#   3. gpu_bench kvfp8: the MLA and indexer kernels over BF16 / fp32 vs FP8 pools, device time
#      (FP8_INDEXER=1: also gpu_bench indexer, the fp32-key table);
#   4. bench model (full width, 4 layers) at FP8_BATCH x FP8_CONTEXTS, both cache dtypes, per-op profile.
# Logs (at most 8 files) in $OUT, else /tmp/gpu-fp8-decode; a short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-fp8-decode}
mkdir -p "$LOG"
t0=$(date +%s)
targets="dsserve gpu_bench"
[ "${FP8_CHECKS:-0}" = 1 ] && targets="$targets gpu_ops_check gpu_model_check"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target $targets >>"$LOG/build.log" 2>&1 ||
  { tail -30 "$LOG/build.log"; echo "BUILD FAILED"; exit 1; }
t1=$(date +%s)
echo "build $((t1 - t0)) s; $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader)"
for k in k_mla_tc k_indexer_tc k_kv_fp8; do
  cuobjdump --dump-resource-usage build-gpu/src/backend/CMakeFiles/ds_backend_cuda.dir/cuda/$k.cu.o 2>&1 |
    grep -A1 "Function" | grep -o "Function [^ ]*\|REG:[0-9]*\|STACK:[0-9]*\|LOCAL:[0-9]*" | paste -sd' ' |
    sed 's/Function /\n/g' | sed 's/_ZN2ds7backend4cuda[^ ]*_cu_[0-9a-f]*//' | grep -v "^$"
done | tee "$LOG/resources.txt"
status=0
if [ "${FP8_CHECKS:-0}" = 1 ]; then  # the attention ops (FP8 pools included) and the models with FP8 KV
  build-gpu/tests/gpu/gpu_ops_check attention >"$LOG/checks.log" 2>&1 || status=1
  build-gpu/tests/gpu/gpu_model_check >>"$LOG/checks.log" 2>&1 || status=1
  grep -h "^FAIL\|^== gpu_\|kv_bf16x8\|FP8 pool\|fp8" "$LOG/checks.log" | head -40
fi
timeout 300 build-gpu/tests/gpu/gpu_bench kvfp8 >"$LOG/kvfp8.log" 2>&1 || status=1
grep -v "^$\|\[info\]" "$LOG/kvfp8.log"
if [ "${FP8_INDEXER:-0}" = 1 ]; then  # the fp32-key indexer table (unchanged path), for comparison with PERF.md
  timeout 200 build-gpu/tests/gpu/gpu_bench indexer >"$LOG/indexer.log" 2>&1 || status=1
  grep "^| " "$LOG/indexer.log" | grep -v "\[info\]"
fi
t2=$(date +%s)
for ctx in ${FP8_CONTEXTS:-32768}; do
  for dt in bf16 fp8_e4m3; do
    echo "---- bench model: context $ctx, $dt" | tee -a "$LOG/models.txt"
    timeout 300 build-gpu/dsserve bench model --preset full-width --num-layers 4 --device cuda \
      --batch "${FP8_BATCH:-32,128}" --context "$ctx" --kv-cache-dtype $dt --steps 5 --warmup 2 --prefill '' \
      ${FP8_PROFILE:+--profile} --log-level warning >"$LOG/model.txt" 2>&1 || status=1
    cat "$LOG/model.txt" >>"$LOG/models.txt"
    grep -E "HBM ceiling|KV cache|^ +4 +[0-9]+ |Profile|^  (indexer|mla_att|moe_exp|cache_w)|FAILED" "$LOG/model.txt"
  done
done
rm -f "$LOG/model.txt"
t3=$(date +%s)
echo "checks + kernels $((t2 - t1)) s, bench model $((t3 - t2)) s, exit $status"
exit $status
