#!/usr/bin/env bash
# `dsserve serve --tp 2` (and --tp 2 --ep 2, and data parallelism: --dp 2 --enable-dp-attention --tp 2,
# --dp 2 replicas) on CPU ranks: greedy chat and /generate identical to one rank, streaming, a client
# that disconnects mid-stream, /get_server_info (per DP rank); then a rank that fails mid-run
# (DSSERVE_FAIL_RANK) must stop the server with exit 1 and the rank named, never a hang.
# usage: test_parallel.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
COMMON=(--model-path "$MODEL" --served-model-name m --encoder dsv32 --random-seed 0 --max-running-requests 4 --context-length 512
        --page-size 16 --threads 2)

chat() {  # greedy chat completion text of PROMPT
  curl -sf "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"$1\"}],\"temperature\":0,\"max_tokens\":24}"
}
generate() {  # greedy /generate of two prompts in one batch
  curl -sf "$BASE_URL/generate" -H 'Content-Type: application/json' \
    -d '{"text":["The capital of France is","1, 2, 3, 4,"],"sampling_params":{"temperature":0,"max_new_tokens":20}}'
}
outputs() {  # everything greedy this server answers, one line each
  jget "$(chat 'Tell me about tensor parallelism.')" 'j["choices"][0]["message"]["content"]'
  jget "$(chat 'Count to ten.')" 'j["choices"][0]["message"]["content"]'
  jget "$(generate)" '[x["text"] for x in j]'
}

start_server "$TMP/one.log" "${COMMON[@]}"
outputs >"$TMP/one.txt"
stop_server

for layout in "--tp 2" "--tp 2 --ep 2" "--tp 2 --dp 2 --enable-dp-attention" \
  "--tp 4 --dp 2 --ep 4 --enable-dp-attention --moe-dense-tp-size 1" "--dp 2"; do
  # shellcheck disable=SC2086
  start_server "$TMP/tp.log" "${COMMON[@]}" $layout
  want_tp=$(sed -n 's/.*--tp \([0-9]\).*/\1/p' <<<"$layout")
  want_tp=${want_tp:-1}
  ranks=$want_tp
  [[ $layout == "--dp 2" ]] && ranks=2  # replicas: dp x tp ranks
  grep -q "x $ranks ranks" "$SERVER_LOG" || fail "$layout: no rank count in the load line"
  outputs >"$TMP/tp.txt"
  diff "$TMP/one.txt" "$TMP/tp.txt" >/dev/null || fail "$layout: outputs differ from one rank: $(diff "$TMP/one.txt" "$TMP/tp.txt")"
  info=$(curl -sf "$BASE_URL/get_server_info")
  [ "$(jget "$info" 'j["tp_size"]')" = "$want_tp" ] || fail "$layout: server info tp_size: $info"
  if [[ $layout == *"--dp 2"* ]]; then
    # Both DP groups served requests (the router spreads them), and each reports its own state.
    routed=$(jget "$info" '[g["requests_routed"] for g in j["internal_states"][0]["dp_ranks"]]')
    python3 -c "import sys; r=eval(sys.argv[1]); assert len(r)==2 and min(r)>0, r" "$routed" ||
      fail "$layout: requests per DP group: $routed"
  fi
  # Streaming, and a client that goes away mid-stream: the server goes on serving.
  n=$(curl -sN "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":16,"temperature":0}' |
    grep -c '^data: {')
  [ "$n" -ge 2 ] || fail "$layout: $n streamed chunks"
  curl -sN --max-time 0.5 "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":400,"ignore_eos":true}' \
    >/dev/null 2>&1 || true
  outputs >"$TMP/tp2.txt"
  diff "$TMP/one.txt" "$TMP/tp2.txt" >/dev/null || fail "$layout: outputs after a disconnect differ"
  stop_server
  echo "$layout: identical to one rank"
done

# A rank that fails at its 5th step: the request fails, the server exits 1 naming the rank. Under DP
# attention rank 1 is the other DP group, which steps (idle) with the one that has the request.
fail_rank() {  # LAYOUT...
  SERVER_LOG="$TMP/fail.log"
  DSSERVE_FAIL_RANK=1@5 "$BIN" serve --port 0 "${COMMON[@]}" "$@" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do grep -q "fired up and ready" "$SERVER_LOG" && break; sleep 0.1; done
  BASE_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$SERVER_LOG" | head -1)
  [ -n "$BASE_URL" ] || fail "$*: the failing-rank server did not start"
  code=$(curl -s -o "$TMP/fail.json" -w '%{http_code}' "$BASE_URL/generate" -H 'Content-Type: application/json' \
    -d '{"text":"hello","sampling_params":{"max_new_tokens":50,"ignore_eos":true}}' || true)
  rc=0
  for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "$*: the server still runs 30 s after a rank failed"
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [ "$rc" = 1 ] || fail "$*: exit $rc after a rank failed, expected 1"
  grep -q "rank 1 of 2 failed: injected failure" "$SERVER_LOG" || fail "$*: the log does not name the failed rank"
  [ "$code" != 200 ] || grep -q "rank 1 of 2 failed" "$TMP/fail.json" ||
    fail "$*: the request did not fail: $code $(cat "$TMP/fail.json")"
  echo "$*: a failed rank stops the server (exit 1, rank named; request: HTTP $code)"
}
fail_rank --tp 2
fail_rank --tp 2 --dp 2 --enable-dp-attention
echo ok
