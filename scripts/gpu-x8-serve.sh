#!/usr/bin/env bash
# Issue 16 on the device kind nvidia-h200-x8 (scripts/device-prepare.sh here first, .device-carry carried):
# the full-size DeepSeek-V3.2 (61 layers + the MTP layer, ~690 GB of FP8 / BF16 weights) served on 8 GPUs.
# No checkpoint of that size fits the machine's disk (235 GB) or can be downloaded there, so the weights are
# random, made by each rank in its own GPU's memory (`serve --load-format dummy`: only its part; config.json
# from `make-model --preset full-width --num-layers 61 --config-only`). One layout per call (a call is at
# most 10 minutes): X8_LAYOUT=tp8 (--tp 8) or dp8 (--tp 8 --dp 8 --enable-dp-attention --ep 8, SGLang's DP
# attention with EP8). In one call:
#   1. bench serving, random prompts, --random-range-ratio 1: X8_INPUTS (default "1024") x 1024 out at
#      concurrencies X8_CONC (default "1 16 64 256"), 2 x concurrency prompts each (at least 4): output tok/s,
#      tok/s per GPU, TTFT, TPOT, P99 ITL; --speculative-algorithm EAGLE with X8_MTP=1;
#   2. the load time, each GPU's memory after loading (nvidia-smi), the KV pool line;
#   3. with X8_BENCH_MODEL=1 (instead of serving): `bench model --tp 8` on the same layout, per-rank step and
#      collective times at batch 1 / 16 / 64 / 256 (dp8: 1 / 8 / 32 per DP group; X8_BATCH to change), context
#      X8_CONTEXT (1024: 256 x 1024 tokens of KV, 27 GB per rank under TP8, fit beside 82 GiB of weights).
# Logs in $OUT (at most 8 files come back: a summary.txt and one tarball). NCCL_NVLS_ENABLE=0 as the device
# notes say.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
export NCCL_NVLS_ENABLE=0
LOG=${OUT:-/tmp/gpu-x8}
mkdir -p "$LOG"
W=/tmp/gpu-x8-work
rm -rf "$W" && mkdir -p "$W"
SUM=$LOG/summary.txt
GPUS=$(nvidia-smi -L | wc -l)
[ "$GPUS" -ge 8 ] || { echo "gpu-x8-serve: $GPUS GPU(s); needs 8" | tee "$SUM"; exit 2; }
t0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=OFF >"$W/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$W/build.log" 2>&1 ||
  { tail -30 "$W/build.log"; echo "BUILD FAILED"; exit 1; }
BIN=$PWD/build-gpu/dsserve
case "${X8_LAYOUT:-tp8}" in
  tp8) LAYOUT=(--tp 8) BM_LAYOUT=(--tp 8) BM_BATCH=1,16,64,256 ;;
  # bench model's --batch is per DP group under --dp: 1 / 8 / 32 per group = 8 / 64 / 256 in all.
  dp8) LAYOUT=(--tp 8 --dp 8 --enable-dp-attention --ep 8) BM_LAYOUT=(--tp 8 --dp 8 --ep 8) BM_BATCH=1,8,32 ;;
  *) echo "X8_LAYOUT must be tp8 or dp8"; exit 2 ;;
esac
{
  echo "date: $(date -u +%F) layout: ${LAYOUT[*]} build: $(( $(date +%s) - t0 )) s"
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
} | tee "$SUM"

SPEC=()
[ "${X8_MTP:-0}" = 1 ] && SPEC=(--speculative-algorithm EAGLE)
M=$W/dsv32
"$BIN" make-model --preset full-width --num-layers 61 --config-only --out "$M" >"$W/make-model.log" 2>&1 ||
  { cat "$W/make-model.log"; exit 1; }
cp .device-carry/tokenizer.json .device-carry/tokenizer_config.json "$M/"
# The plan serve should arrive at (weights per rank, KV pool), next to what it reports below.
free_gib=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits | sort -n | head -1 | awk '{print $1 / 1024}')
"$BIN" memory-plan --model-path "$M" "${LAYOUT[@]}" --gpu-memory-gib "$free_gib" --context-length 8192 \
  "${SPEC[@]}" 2>&1 | tee -a "$SUM"

status=0
if [ "${X8_BENCH_MODEL:-0}" = 1 ]; then
  # The forward alone; bench model makes the same random weights from the preset (61 layers).
  timeout 560 "$BIN" bench model --preset full-width --num-layers 61 --device cuda "${BM_LAYOUT[@]}" \
    --batch "${X8_BATCH:-$BM_BATCH}" --context "${X8_CONTEXT:-1024}" --prefill '' --steps 10 --warmup 3 \
    >"$W/bench-model.txt" 2>&1 || status=1
  grep -v "^generating" "$W/bench-model.txt" | tail -40 | tee -a "$SUM"
else
  t1=$(date +%s)
  "$BIN" serve --model-path "$M" --load-format dummy --device cuda --port 30000 --served-model-name dsv32 \
    --reasoning-parser deepseek-v3 --tool-call-parser deepseekv32 --enable-metrics --random-seed 0 \
    --context-length 8192 "${LAYOUT[@]}" "${SPEC[@]}" ${SPEC:+--speculative-num-steps 3 --speculative-eagle-topk 1 \
    --speculative-num-draft-tokens 4} >"$W/serve.log" 2>&1 &
  pid=$!
  up=0
  for _ in $(seq 1 $(( ${X8_READY_S:-420} * 5 ))); do
    grep -q "fired up and ready" "$W/serve.log" && { up=1; break; }
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
  done
  t2=$(date +%s)
  echo "serve: ready=$up after $((t2 - t1)) s" | tee -a "$SUM"
  grep -h "random weights for\|loaded \|KV pool\|CUDA graphs" "$W/serve.log" | head -6 | tee -a "$SUM"
  nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader | tee -a "$SUM"
  if [ $up = 1 ]; then
    curl -s http://127.0.0.1:30000/v1/chat/completions -H 'content-type: application/json' \
      -d '{"model":"dsv32","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8,"temperature":0}' |
      head -c 300 | tee -a "$SUM"
    echo | tee -a "$SUM"
    for in_len in ${X8_INPUTS:-1024}; do
      for c in ${X8_CONC:-1 16 64 256}; do
        n=$(( c * 2 < 4 ? 4 : c * 2 ))
        tag=in${in_len}-c$c
        timeout "${X8_BENCH_S:-240}" "$BIN" bench serving --backend sglang --port 30000 --dataset-name random \
          --random-input-len "$in_len" --random-output-len "${X8_OUT_LEN:-1024}" --random-range-ratio 1 \
          --num-prompts "$n" --max-concurrency "$c" --tokenizer "$M" --seed 1 \
          --output-file "$W/bench.jsonl" >"$W/bench-$tag.txt" 2>&1 || status=1
        {
          echo "== $in_len in / ${X8_OUT_LEN:-1024} out, concurrency $c, $n prompts"
          grep -E "Output token throughput|Mean TTFT|Mean TPOT|P99 ITL|Accept length|Successful requests" \
            "$W/bench-$tag.txt"
          tps=$(sed -n 's/^Output token throughput (tok\/s): *//p' "$W/bench-$tag.txt")
          [ -n "$tps" ] && python3 -c "print(f'output tok/s per GPU: {float(\"$tps\") / 8:.1f}')"
        } | tee -a "$SUM"
      done
    done
  else
    tail -30 "$W/serve.log" | tee -a "$SUM"
    status=1
  fi
  kill -TERM $pid 2>/dev/null
  wait $pid 2>/dev/null
fi
echo "total $(( $(date +%s) - t0 )) s, status $status" | tee -a "$SUM"
tar -C "$W" -czf "$LOG/x8-logs.tgz" --exclude=dsv32 --exclude=bench.jsonl . 2>/dev/null
exit $status
