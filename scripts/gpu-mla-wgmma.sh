#!/usr/bin/env bash
# On the GPU machine (device tool): builds, checks and times the wgmma MLA kernels (issue 18: the one-block
# form k_mla_wgmma.cu and the two-block form k_mla_wgmma_pair.cu) in one call.
#   MLA_STAGE=quick  build, `gpu_ops_check mla`, `gpu_bench mla`, the kernel's SASS counts
#   MLA_STAGE=all    (default) also, if the MLA checks pass: gpu_ops_check, gpu_model_check,
#                    gpu_sampling_check, and the 8-layer 8K prefill profiled under each DSSERVE_MLA_KERNEL of
#                    MLA_MODEL_KERNELS (default "auto wgmma-pair auto": the first again last, for the spread)
#   MLA_STAGE=final  as all without the whole gpu_ops_check (its MLA part runs in quick)
#   MLA_BENCH_ROWS=prefill  gpu_bench mla's prefill rows alone
# Logs go to $OUT (or /tmp/gpu-mla) as one tarball, a short summary is printed last. Every step has its own
# time limit, so a hang in one leaves the others their time.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-mla}
L=$(mktemp -d)
mkdir -p "$LOG" .device-carry
[ -d ../deps ] && cp -r ../deps .device-carry/  # run from .device-carry/wt-mla of the main checkout
source scripts/device-env.sh
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$L/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target gpu_ops_check gpu_bench gpu_model_check gpu_sampling_check dsserve \
    >>"$L/build.log" 2>&1
build=$?
t1=$(date +%s)
save() { tar czf "$LOG/mla.tgz" -C "$L" . 2>/dev/null; }  # after every step: a killed call still returns logs
finish() {
  save
  echo "== build $((t1 - t0)) s, total $(($(date +%s) - t0)) s"
}
if [ $build -ne 0 ]; then tail -40 "$L/build.log"; echo "BUILD FAILED"; finish; exit 1; fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$L/device.txt"
B=build-gpu/tests/gpu
for k in k_mla_wgmma k_mla_wgmma_pair; do
  O=build-gpu/src/backend/CMakeFiles/ds_backend_cuda.dir/cuda/$k.cu.o
  cuobjdump --dump-sass "$O" >"$L/sass-$k.txt" 2>&1
  echo "SASS $k: $(grep -c HGMMA "$L/sass-$k.txt") HGMMA, $(grep -c 'LDL\|STL' "$L/sass-$k.txt") local loads/stores," \
    "$(grep -c 'HMMA' "$L/sass-$k.txt") HMMA"
done
timeout 150 $B/gpu_ops_check mla >"$L/mla.log" 2>&1
mla=$?
save
grep -h "FAIL\|^== " "$L/mla.log" | head -40
GPU_BENCH_MLA=${MLA_BENCH_ROWS:-all} timeout 180 $B/gpu_bench mla >"$L/bench.log" 2>&1
echo "gpu_bench mla exit $?"
save
grep -h "^| \(decode\|prefill\)" "$L/bench.log" | tail -9
grep -h "ceiling" "$L/bench.log" | head -3
if [ "${MLA_STAGE:-all}" != quick ] && [ $mla -eq 0 ]; then
  suites="model sampling"
  if [ "${MLA_STAGE:-all}" = all ]; then timeout 240 $B/gpu_ops_check >"$L/ops.log" 2>&1; suites="ops $suites"; save; fi
  timeout 200 $B/gpu_model_check >"$L/model.log" 2>&1
  save
  timeout 90 $B/gpu_sampling_check >"$L/sampling.log" 2>&1
  for f in $suites; do echo "$f: $(grep -h '^== ' "$L/$f.log" || echo none)"; grep -h "FAILED:" "$L/$f.log" | head -10; done
  for k in ${MLA_MODEL_KERNELS:-auto wgmma-pair auto}; do
    n=$((${n:-0} + 1))
    DSSERVE_MLA_KERNEL=$k timeout 150 build-gpu/dsserve bench model --preset full-width --num-layers 8 --device cuda \
      --batch 1,8 --prefill 8192 --profile >"$L/model-$n-$k.log" 2>&1
    echo "bench model DSSERVE_MLA_KERNEL=$k exit $?:"
    grep -h "^ *8 *8192\|^ *8 *[18] \|mla_attention_absorbed\|Profile: prefill" "$L/model-$n-$k.log" | head -9
    save
  done
fi
finish
