#!/usr/bin/env bash
# `dsserve serve --tp 2` (and --tp 2 --ep 2, and data parallelism: --dp 2 --enable-dp-attention --tp 2,
# --dp 2 replicas) on CPU ranks: greedy chat and /generate identical to one rank, streaming, a client
# that disconnects mid-stream, /get_server_info (per DP rank); then a rank that fails mid-run
# (DSSERVE_FAIL_RANK) must stop the server with exit 1 and the rank named, never a hang. Two nodes on
# this machine (--nnodes 2: two processes, Gloo between their CPU ranks): the same outputs, node 1 exits
# with node 0, and a rank failing on node 1 stops both. --load-format dummy: a config-only directory, random
# weights per rank, --tp 2 / --ep 2 identical to one rank.
# usage: test_parallel.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
NODE1_PID=""
trap 'cleanup; [ -n "$NODE1_PID" ] && kill -KILL "$NODE1_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
COMMON=(--model-path "$MODEL" --served-model-name m --encoder dsv32 --random-seed 0 --max-running-requests 4 --context-length 512
        --page-size 16 --threads 2 --enable-metrics)

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
    metrics=$(curl -sf "$BASE_URL/metrics")  # (not piped into grep -q: pipefail would see curl's SIGPIPE)
    grep -q 'dsserve:dp_requests_routed{model_name="m",dp_rank="1"}' <<<"$metrics" ||
      fail "$layout: no per-DP-rank metrics"
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

# --load-format dummy (SGLang's flag): a directory with config.json and the tokenizer only; each rank makes
# random weights in its own memory, only its part, the same values as one rank's cut: --tp 2 and --tp 2
# --ep 2 answer exactly as one rank does. Without the flag the missing safetensors are a clear error.
CFG=$TMP/config-only
mkdir -p "$CFG"
cp "$MODEL/config.json" "$MODEL/tokenizer.json" "$MODEL/tokenizer_config.json" "$CFG/"
DUMMY=(--model-path "$CFG" "${COMMON[@]:2}" --load-format dummy)
start_server "$TMP/dummy.log" "${DUMMY[@]}"
grep -q "random weights for" "$SERVER_LOG" || fail "--load-format dummy: no random-weights line in the log"
outputs >"$TMP/dummy1.txt"
stop_server
for layout in "--tp 2" "--tp 2 --ep 2"; do
  # shellcheck disable=SC2086
  start_server "$TMP/dummy.log" "${DUMMY[@]}" $layout
  outputs >"$TMP/dummy2.txt"
  diff "$TMP/dummy1.txt" "$TMP/dummy2.txt" >/dev/null ||
    fail "--load-format dummy $layout: outputs differ from one rank: $(diff "$TMP/dummy1.txt" "$TMP/dummy2.txt")"
  stop_server
  echo "--load-format dummy $layout: identical to one rank"
done
rc=0
"$BIN" serve --port 0 --model-path "$CFG" "${COMMON[@]:2}" >"$TMP/nodummy.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "no .safetensors files (serve --load-format dummy" "$TMP/nodummy.log" ||
  fail "a config-only directory without --load-format dummy: exit $rc, $(tail -2 "$TMP/nodummy.log")"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for layout in "--tp 2" "--tp 4 --ep 4"; do
  NODES=(--nnodes 2 --dist-init-addr "127.0.0.1:$(free_port)")
  # shellcheck disable=SC2086
  "$BIN" serve "${COMMON[@]}" $layout "${NODES[@]}" --node-rank 1 >"$TMP/node1.log" 2>&1 &
  NODE1_PID=$!
  # shellcheck disable=SC2086
  start_server "$TMP/node0.log" "${COMMON[@]}" $layout "${NODES[@]}" --node-rank 0
  grep -q "over 2 nodes" "$SERVER_LOG" || fail "$layout over 2 nodes: no node count in the load line"
  outputs >"$TMP/mn.txt"
  diff "$TMP/one.txt" "$TMP/mn.txt" >/dev/null ||
    fail "$layout over 2 nodes: outputs differ from one rank: $(diff "$TMP/one.txt" "$TMP/mn.txt")"
  stop_server
  rc=0
  wait "$NODE1_PID" || rc=$?
  NODE1_PID=""
  [ "$rc" = 0 ] || fail "$layout: node 1 exited $rc when node 0 stopped: $(tail -3 "$TMP/node1.log")"
  grep -q "node 0 stopped the deployment" "$TMP/node1.log" || fail "$layout: node 1 did not see node 0 stop"
  echo "$layout over 2 nodes: identical to one rank; node 1 stopped with node 0"
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

# Rank 1 on node 1 fails: node 0 exits 1 naming it, node 1 exits 1 too.
NODES=(--nnodes 2 --dist-init-addr "127.0.0.1:$(free_port)")
DSSERVE_FAIL_RANK=1@5 "$BIN" serve "${COMMON[@]}" --tp 2 "${NODES[@]}" --node-rank 1 >"$TMP/node1.log" 2>&1 &
NODE1_PID=$!
fail_rank --tp 2 "${NODES[@]}" --node-rank 0
rc=0
for _ in $(seq 1 300); do kill -0 "$NODE1_PID" 2>/dev/null || break; sleep 0.1; done
wait "$NODE1_PID" || rc=$?
NODE1_PID=""
[ "$rc" = 1 ] || fail "node 1 exited $rc after its rank failed, expected 1: $(tail -3 "$TMP/node1.log")"
echo "a failed rank on node 1 stops both nodes (node 1 exit 1)"
echo ok
