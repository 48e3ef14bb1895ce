#!/usr/bin/env bash
# On the GPU machine (device tool): the same measurements on this tree and on a baseline tree, alternated in
# one call so both see the same GPU within minutes — for changes that must not move the numbers.
# Baseline: .device-carry/baseline.tar (here: `git archive -o .device-carry/baseline.tar REV`), carried
# with .device-carry (and scripts/device-prepare.sh's deps).
#   1. `bench model` (full-width preset, CMP_LAYERS layers, decode at CMP_BATCH, prefill CMP_PREFILL),
#      baseline then this tree, CMP_ROUNDS times;
#   2. the demo model served (CUDA graphs on) and measured by `dsserve bench serving` at concurrency 1
#      (10 x 1024/1024) and 32 (64 x 256/256), each tree CMP_ROUNDS times (default 2), alternating.
# Logs in $OUT (at most 8 files come back), a summary last.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-compare}
mkdir -p "$LOG"
SUM=$LOG/summary.txt
BASE=/tmp/baseline
rm -rf $BASE && mkdir -p $BASE && tar -xf .device-carry/baseline.tar -C $BASE || { echo "no baseline tar"; exit 1; }
mkdir -p $BASE/.device-carry && cp -r .device-carry/deps $BASE/.device-carry/
build() {  # build SRC_DIR
  (cd "$1" && source scripts/device-env.sh &&
    cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON >/dev/null &&
    cmake --build build-gpu -j "$(nproc)" --target dsserve >/dev/null) 2>&1 | tail -20
}
t0=$(date +%s)
build . & build $BASE & wait
[ -x build-gpu/dsserve ] && [ -x $BASE/build-gpu/dsserve ] || { echo "BUILD FAILED"; exit 1; }
echo "date: $(date -u +%F) device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader); builds $(($(date +%s) - t0)) s" | tee "$SUM"
L=${CMP_LAYERS:-8}
for round in $(seq 1 "${CMP_ROUNDS:-2}"); do
  for tree in base new; do
    DS=build-gpu/dsserve; [ $tree = base ] && DS=$BASE/build-gpu/dsserve
    timeout 240 $DS bench model --preset full-width --num-layers "$L" --device cuda --batch "${CMP_BATCH:-1,8,32,128}" \
      --context 4096 --steps 10 --warmup 3 --prefill "${CMP_PREFILL:-8192}" --chunk 8192 >"$LOG/model-$tree-$round.txt" 2>&1
    echo "== bench model, $tree, round $round" | tee -a "$SUM"
    grep -E "^ +$L +[0-9]+ " "$LOG/model-$tree-$round.txt" | tee -a "$SUM"
  done
done
DEMO=/tmp/demo-model
build-gpu/dsserve make-model --preset demo --seed 0 --out $DEMO >/dev/null 2>&1
cp .device-carry/tokenizer.json $DEMO/ 2>/dev/null
[ -f .device-carry/tokenizer_config.json ] && cp .device-carry/tokenizer_config.json $DEMO/
serve_bench() {  # serve_bench DS TAG
  local t0s=$(date +%s.%N)
  $1 serve --model-path $DEMO --device cuda --port 30000 --encoder dsv32 --served-model-name demo >"$LOG/serve-$2.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 900); do curl -sf http://127.0.0.1:30000/health >/dev/null && break; sleep 0.2; done
  echo "== serve $2: ready after $(echo "$(date +%s.%N) - $t0s" | bc) s; $(grep -h 'CUDA graphs:' "$LOG/serve-$2.log" | head -1)" | tee -a "$SUM"
  for c in "10 1024 1" "64 256 32"; do
    set -- $c
    timeout 200 build-gpu/dsserve bench serving --backend sglang --port 30000 --dataset-name random --random-input-len $2 \
      --random-output-len $2 --random-range-ratio 1 --num-prompts $1 --max-concurrency $3 --tokenizer $DEMO 2>&1 |
      grep -E "Output token throughput|Mean TPOT|Mean TTFT" | sed "s/^/  c$3 /" | tee -a "$SUM"
  done
  kill -TERM $pid; wait $pid
}
for round in $(seq 1 "${CMP_ROUNDS:-2}"); do
  serve_bench $BASE/build-gpu/dsserve base-$round
  serve_bench build-gpu/dsserve new-$round
done
