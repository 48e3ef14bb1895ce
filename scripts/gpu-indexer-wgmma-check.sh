#!/usr/bin/env bash
# On the GPU machine (device tool), one call: the FP8 wgmma indexer kernel (k_indexer_wgmma.cu; branch
# indexer-wgmma) checked and timed.
#   1. build (Release, CUDA, tests): gpu_ops_check, gpu_bench, dsserve; the kernel's SASS instruction mix;
#   2. `gpu_ops_check indexer` (the SIMT and tc kernels' checks, then the wgmma kernel's: scores against
#      exact / tc, top-k, the kernel choice); INDEXER_OPS=indexer-wgmma for the wgmma checks alone;
#   3. `gpu_bench indexer-wgmma` (tc vs wgmma, prefill 4K / 8K / 16K, decode 1 / 32 at 4K);
#      the same wgmma checks with 8 tokens per block (DSSERVE_INDEXER_WGMMA_SHAPE=8,16); block shapes timed;
#   4. `dsserve bench model --preset full-width --num-layers 8 --indexer fp8 --prefill 8192 --profile` with
#      DSSERVE_INDEXER_KERNEL=tc, then =wgmma (4 and 8 tokens per block); skipped when the call's time is
#      nearly spent.
# Run scripts/device-prepare.sh here first and carry .device-carry. Logs: one tarball $OUT/all.tgz, saved
# after every step; a summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-indexer}
L=$(mktemp -d)
mkdir -p "$LOG" .device-carry
source scripts/device-env.sh
save() { tar czf "$LOG/all.tgz" -C "$L" . 2>/dev/null; }
t0=$(date +%s)
left() { echo $(( ${INDEXER_BUDGET_S:-400} - ($(date +%s) - t0) )); }
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$L/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target gpu_ops_check gpu_bench dsserve >>"$L/build.log" 2>&1
build=$?
echo "build: $build after $(( $(date +%s) - t0 )) s"
if [ $build -ne 0 ]; then tail -40 "$L/build.log"; echo "BUILD FAILED"; save; exit 1; fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$L/device.txt"
obj=build-gpu/src/backend/CMakeFiles/ds_backend_cuda.dir/cuda/k_indexer_wgmma.cu.o
cuobjdump --dump-sass "$obj" >"$L/sass.txt" 2>&1
echo "SASS: $(grep -c QGMMA "$L/sass.txt") QGMMA, $(grep -c -E 'LDL|STL' "$L/sass.txt") LDL/STL, $(grep -c UBLKCP "$L/sass.txt") UBLKCP"
B=build-gpu/tests/gpu
summary_of() { grep -h '^== ' "$1" 2>/dev/null || echo "no summary (exit $2)"; }

timeout 150 $B/gpu_ops_check "${INDEXER_OPS:-indexer}" >"$L/ops.log" 2>&1
ops=$?
save
echo "gpu_ops_check ${INDEXER_OPS:-indexer}: $(summary_of "$L/ops.log" $ops)"
grep -h "FAILED:" "$L/ops.log" | head -20
grep -h "wgmma" "$L/ops.log" | grep -v "^ok" | head -20

# the other block shape (8 tokens per block) through the same checks
DSSERVE_INDEXER_WGMMA_SHAPE=8,16 timeout 100 $B/gpu_ops_check indexer-wgmma >"$L/ops-qt8.log" 2>&1
echo "gpu_ops_check indexer-wgmma, shape 8,16: $(summary_of "$L/ops-qt8.log" $?)"
grep -h "FAILED:" "$L/ops-qt8.log" | head -10
save

timeout 100 $B/gpu_bench indexer-wgmma >"$L/bench.log" 2>&1
echo "gpu_bench indexer-wgmma: exit $?"
save
grep -h "^| \|device" "$L/bench.log"
# block shapes (tokens, max tiles of 128 keys): 8K / 16K prefill rows only
for sh in ${INDEXER_SHAPES:-4,8 4,32 8,8 8,16 8,32}; do
  if [ "$(left)" -lt 40 ]; then echo "shape $sh skipped: $(left) s left"; continue; fi
  DSSERVE_INDEXER_WGMMA_SHAPE=$sh GPU_BENCH_INDEXER_QUICK=1 timeout 60 $B/gpu_bench indexer-wgmma >"$L/bench-$sh.log" 2>&1
  echo "shape $sh: $(grep -h '^| prefill' "$L/bench-$sh.log" | awk -F'|' '{printf "%s:%s ", $3, $7}')"
done
save

for k in tc wgmma wgmma-8; do
  if [ "$(left)" -lt 45 ]; then echo "model A/B ($k) skipped: $(left) s left"; continue; fi
  shape=4,16
  [ $k = wgmma-8 ] && shape=8,16
  DSSERVE_INDEXER_KERNEL=${k%-8} DSSERVE_INDEXER_WGMMA_SHAPE=$shape timeout $(( $(left) - 10 )) build-gpu/dsserve bench model \
    --preset full-width --num-layers 8 --device cuda --batch '' --prefill 8192 --indexer fp8 --profile \
    --csv "$L/model-$k.csv" >"$L/model-$k.log" 2>&1
  echo "bench model ($k): exit $?"
  save
  grep -h -A1 "^layers" "$L/model-$k.log"
  grep -h -E "Profile|indexer_topk|hadamard" "$L/model-$k.log" | head -4
done
echo "total $(( $(date +%s) - t0 )) s"
save
