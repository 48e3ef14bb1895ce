#!/usr/bin/env bash
# `dsserve bench serving` against the real `dsserve serve` (issue 5): the sglang backend (/generate)
# and the OpenAI chat backend, each must report every request successful with the right token counts.
# usage: test_bench_serving.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --page-size 16 --threads 1
PORT=${BASE_URL##*:}
for backend in sglang sglang-oai-chat; do
  "$BIN" bench serving --backend "$backend" --port "$PORT" --dataset-name random --random-input-len 48 \
    --random-output-len 12 --random-range-ratio 1 --num-prompts 6 --max-concurrency 3 --tokenizer "$MODEL" \
    --output-file "$TMP/bench.jsonl" >"$TMP/$backend.txt" 2>&1 || { cat "$TMP/$backend.txt"; fail "bench $backend failed"; }
  grep -q "Serving Benchmark Result" "$TMP/$backend.txt" || fail "$backend: no report"
  grep -Eq "^Successful requests:\s+6\b" "$TMP/$backend.txt" || { cat "$TMP/$backend.txt"; fail "$backend: not all 6 requests succeeded"; }
  grep -Eq "^Total generated tokens:\s+72\b" "$TMP/$backend.txt" || { cat "$TMP/$backend.txt"; fail "$backend: want 6 x 12 generated tokens"; }
done
# No --tokenizer: the client asks the server (/get_model_info) and loads the tokenizer it serves.
"$BIN" bench serving --port "$PORT" --dataset-name random --random-input-len 32 --random-output-len 4 \
  --random-range-ratio 1 --num-prompts 2 --output-file "$TMP/bench.jsonl" >"$TMP/fallback.txt" 2>&1 ||
  { cat "$TMP/fallback.txt"; fail "bench without --tokenizer failed"; }
grep -q "no --tokenizer: using the server's tokenizer $MODEL" "$TMP/fallback.txt" || { cat "$TMP/fallback.txt"; fail "no tokenizer fallback"; }
grep -Eq "^Total generated tokens:\s+8\b" "$TMP/fallback.txt" || { cat "$TMP/fallback.txt"; fail "fallback run: want 2 x 4 tokens"; }
[ "$(wc -l <"$TMP/bench.jsonl")" = 3 ] || fail "want one JSONL record per run"
stop_server
echo "bench serving against dsserve serve: ok"
