#!/usr/bin/env bash
# On the GPU machine (device tool, after scripts/device-prepare.sh here and with .device-carry carried):
# builds in Release, runs every GPU check and the benchmarks, prints a short table last. Full logs go to
# $OUT (the device tool brings them back) or /tmp/gpu-check.
#   GPU_CHECK_BENCH=all|gemm|mla|indexer|moe|sampling|none   which benchmarks (default all)
#   GPU_CHECK_TORCH=0                                        skip the torch._scaled_mm peer (run with all|gemm only)
#   GPU_CHECK_TIMEOUT=900                                    seconds each check binary may take (exit 124 past it)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-check}
mkdir -p "$LOG"
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target gpu_ops_check gpu_model_check gpu_sampling_check gpu_dist_check gpu_bench \
    dsserve >>"$LOG/build.log" 2>&1
build=$?
t1=$(date +%s)
if [ $build -ne 0 ]; then tail -40 "$LOG/build.log"; echo "gpu-check: BUILD FAILED"; exit 1; fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv,noheader | tee "$LOG/device.txt"
B=build-gpu/tests/gpu
# A hung kernel must not take the whole device call: each check binary gets GPU_CHECK_TIMEOUT seconds.
TO="timeout ${GPU_CHECK_TIMEOUT:-900}"
$TO $B/gpu_ops_check >"$LOG/ops.log" 2>&1; ops=$?
$TO $B/gpu_model_check >"$LOG/model.log" 2>&1; model=$?
$TO $B/gpu_sampling_check >"$LOG/sampling.log" 2>&1; sampling=$?
NCCL_NVLS_ENABLE=0 DSSERVE_CUDA_GEMM=exact $TO $B/gpu_dist_check >"$LOG/dist.log" 2>&1; dist=$?
# The CLI on the GPU: forward of the tiny FP8 model on both devices (GPU in both GEMM modes), logits
# compared with each other and with the transformers reference.
D=tests/golden/tiny_v32_fp8
IDS=$(python3 -c "import json;print(','.join(map(str,json.load(open('$D/ref/tokens.json'))['sequences'][0])))")
cli=1
F="build-gpu/dsserve forward --model-path $D --token-ids $IDS --log-level warning"
NPY=$(mktemp -d)  # not under $LOG: the device tool brings back at most 8 files
if $F --out "$NPY/cpu.npy" --device cpu && DSSERVE_CUDA_GEMM=exact $F --out "$NPY/exact.npy" --device cuda &&
   DSSERVE_CUDA_GEMM=fast $F --out "$NPY/fast.npy" --device cuda; then
  python3 - "$NPY" >"$LOG/cli.log" 2>&1 <<'PY' && cli=0
import sys, numpy as np
d = sys.argv[1]
c, r = np.load(f"{d}/cpu.npy"), np.load("tests/golden/tiny_v32_fp8/ref/logits_fp32_0.npy")
rel = lambda a, b: np.abs(a - b).max() / np.abs(b).max()
e, f = np.load(f"{d}/exact.npy"), np.load(f"{d}/fast.npy")
print(f"dsserve forward --device cuda (tiny_v32_fp8 seq 0): exact vs cpu {rel(e, c):.2e}, vs reference {rel(e, r):.2e}; "
      f"fast (FP8 activations) vs reference {rel(f, r):.2e}")
sys.exit(0 if rel(e, r) < 1e-4 else 1)
PY
fi
t2=$(date +%s)
bench=0
if [ "${GPU_CHECK_BENCH:-all}" != none ]; then
  $B/gpu_bench "${GPU_CHECK_BENCH:-all}" >"$LOG/bench.log" 2>&1; bench=$?
  if [ "${GPU_CHECK_TORCH:-1}" = 1 ] && [[ "${GPU_CHECK_BENCH:-all}" =~ ^(all|gemm)$ ]]; then
    PYTHONUNBUFFERED=1 timeout 240 python3 scripts/bench_torch_scaled_mm.py >"$LOG/torch.log" 2>&1
  fi
fi
t3=$(date +%s)
echo
echo "================ gpu-check ($(head -1 "$LOG/device.txt")) ================"
echo "build $((t1 - t0)) s, checks $((t2 - t1)) s, benchmarks $((t3 - t2)) s"
grep -h "^FAIL\|FAILED\|error" "$LOG/ops.log" "$LOG/model.log" "$LOG/sampling.log" "$LOG/dist.log" | head -30
grep -h "cuBLASLt FP8 configuration\|device memory" "$LOG/ops.log"
grep -h "^greedy" "$LOG/model.log"
cat "$LOG/cli.log" 2>/dev/null
[ -f "$LOG/bench.log" ] && grep -v "^$" "$LOG/bench.log"
[ -f "$LOG/torch.log" ] && cat "$LOG/torch.log"
printf "\n| check | result |\n|---|---|\n"
printf "| gpu_ops_check | %s |\n" "$(grep -h '^== gpu_ops_check' "$LOG/ops.log" || echo "exit $ops")"
printf "| gpu_model_check | %s |\n" "$(grep -h '^== gpu_model_check' "$LOG/model.log" || echo "exit $model")"
printf "| gpu_sampling_check | %s |\n" "$(grep -h '^== gpu_sampling_check' "$LOG/sampling.log" || echo "exit $sampling")"
printf "| gpu_dist_check | %s |\n" "$(grep -h '^== gpu_dist_check' "$LOG/dist.log" || echo "exit $dist")"
printf "| dsserve forward --device cuda | %s |\n" "$([ $cli = 0 ] && echo PASS || echo FAIL)"
printf "| gpu_bench | %s |\n" "$([ $bench = 0 ] && echo ran || echo "exit $bench")"
[ $ops = 0 ] && [ $model = 0 ] && [ $sampling = 0 ] && [ $dist = 0 ] && [ $cli = 0 ] && [ $bench = 0 ]
