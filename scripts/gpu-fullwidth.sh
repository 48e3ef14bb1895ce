#!/usr/bin/env bash
# On the GPU machine (device tool; run scripts/device-prepare.sh here first and carry .device-carry):
# a full-width DeepSeek-V3.2 model on one GPU, in one call.
#   1. `dsserve bench model` on random full-width FP8 weights generated straight into device memory
#      (FW_LAYERS layers: 3 dense + the rest MoE, as many as fit next to a batch-128 KV pool), plus the
#      cut model (3 dense + 1 MoE) for the extrapolation to 61 layers;
#   2. a 4-layer full-width checkpoint (make-model: 3 dense + 1 MoE, no MTP, ~16 GB) served with
#      `dsserve serve --device cuda` and measured by `dsserve bench serving`.
# Prints a short table last; logs (at most 8 files) in $OUT, else /tmp/gpu-fullwidth.
#   FW_LAYERS=8 FW_BATCH=1,8,32,128 FW_CONTEXT=4096 FW_PREFILL=1024,8192,32768 FW_SERVE=1
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-fullwidth}
mkdir -p "$LOG"
SUM=$LOG/summary.txt
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 ||
  { tail -30 "$LOG/build.log"; echo "BUILD FAILED"; exit 1; }
DS=build-gpu/dsserve
t1=$(date +%s)
{
  echo "date: $(date -u +%F) device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
  echo "host: $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB; build $((t1 - t0)) s"
} | tee "$SUM"

# ---- 1. the forward alone
status=0
timeout 300 $DS bench model --preset full-width --num-layers "${FW_LAYERS:-8}" --device cuda \
  --batch "${FW_BATCH:-1,8,32,128}" --context "${FW_CONTEXT:-4096}" --steps 10 --warmup 3 \
  --prefill "${FW_PREFILL:-1024,8192,32768}" --chunk 8192 --extrapolate-to 61 --profile \
  --csv "$LOG/bench-model.csv" --log-level info 2>&1 | tee "$LOG/bench-model.txt" || status=1
t2=$(date +%s)
echo "bench model: $((t2 - t1)) s (exit $status)" | tee -a "$SUM"

# ---- 2. serving a 4-layer full-width checkpoint
if [ "${FW_SERVE:-1}" = 1 ]; then
  M=/tmp/fullwidth-4
  rm -rf $M
  timeout 120 $DS make-model --preset full-width --num-layers 4 --override '{"num_nextn_predict_layers":0}' \
    --seed 0 --out $M >"$LOG/make-model.log" 2>&1 || status=1
  cp .device-carry/tokenizer.json $M/
  [ -f .device-carry/tokenizer_config.json ] && cp .device-carry/tokenizer_config.json $M/
  t3=$(date +%s)
  echo "make-model full-width 4 layers: $((t3 - t2)) s, $(du -sh $M | cut -f1)" | tee -a "$SUM"
  $DS serve --model-path $M --device cuda --port 30000 --encoder dsv32 --served-model-name fullwidth \
    >"$LOG/serve.log" 2>&1 &
  pid=$!
  up=0
  for _ in $(seq 1 400); do curl -sf http://127.0.0.1:30000/health >/dev/null && { up=1; break; }; sleep 0.2; done
  t4=$(date +%s)
  echo "serve up in $((t4 - t3)) s: $([ $up = 1 ] && echo yes || echo NO)" | tee -a "$SUM"
  bench() {  # PROMPTS IN OUT CONCURRENCY TAG
    timeout 100 $DS bench serving --backend sglang --port 30000 --dataset-name random --random-input-len "$2" \
      --random-output-len "$3" --random-range-ratio 1 --num-prompts "$1" --max-concurrency "$4" --tokenizer $M \
      --output-file /tmp/fullwidth-bench.jsonl >"$LOG/bench-$5.txt" 2>&1 || status=1
    sed -n '/Serving Benchmark Result/,/====*$/p' "$LOG/bench-$5.txt"
  }
  if [ $up = 1 ]; then
    curl -s http://127.0.0.1:30000/v1/chat/completions -H 'content-type: application/json' \
      -d '{"model":"fullwidth","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8,"temperature":0}' \
      | head -c 400 | tee -a "$SUM"; echo | tee -a "$SUM"
    echo "== 10 prompts, 1024 in / 256 out, concurrency 1"; bench 10 1024 256 1 c1
    echo "== 64 prompts, 256 in / 256 out, concurrency 32"; bench 64 256 256 32 c32
  else
    tail -20 "$LOG/serve.log"; status=1
  fi
  kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null
  grep -h "KV\|pool\|loaded" "$LOG/serve.log" | head -4 | tee -a "$SUM"
fi
t5=$(date +%s)

# ---- the short table
{
  echo
  echo "================ gpu-fullwidth: $((t5 - t0)) s ================"
  grep -h "^model:\|^HBM ceiling\|^device memory" "$LOG/bench-model.txt"
  awk -F, 'NR > 1 && ($1 == "decode" || $1 == "decode-extrapolated") {
      printf "%-20s %3d layers  batch %4d  step %9.3f ms  enqueue %9.3f ms  roofline %8.3f ms  x%.2f  %.0f tok/s\n",
             $1, $2, $3, $5, $6, $11, $12, $8 }
    NR > 1 && ($1 == "prefill" || $1 == "prefill-extrapolated") {
      printf "%-20s %3d layers  %6d tokens  %9.3f s  %8.0f tok/s  %7.1f TFLOP/s  %5.1f%% of peak\n",
             $1, $2, $4, $5 / 1000, $8, $14, $15 }' "$LOG/bench-model.csv" 2>/dev/null
  for t in c1 c32; do
    [ -f "$LOG/bench-$t.txt" ] || continue
    printf "serve %-4s " "$t"
    grep -h "Output token throughput\|Mean TTFT\|Mean TPOT\|P99 ITL\|Successful requests" "$LOG/bench-$t.txt" |
      sed 's/  */ /g' | tr '\n' ';'
    echo
  done
} | tee -a "$SUM"
exit $status
