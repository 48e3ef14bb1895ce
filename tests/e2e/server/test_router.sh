#!/usr/bin/env bash
# `dsserve router` over two `dsserve serve` workers (issue 21): greedy chat, streaming chat, /generate
# and completions through the router identical to asking a worker directly; /v1/models; /metrics
# counts; a killed worker -> requests still succeed on the other; all dead -> 503 error object;
# then 200 concurrent streams (bench serving) plus clients hanging up mid-stream: every other
# request completes and no worker holds pages for requests afterwards.
# usage: test_router.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
W1_PID="" W2_PID="" ROUTER_PID=""
kill_all() {
  for p in $W1_PID $W2_PID $ROUTER_PID; do kill -KILL "$p" 2>/dev/null || true; done
}
trap 'kill_all; cleanup; rm -rf "$TMP"' EXIT
WORKER=(--model-path "$MODEL" --served-model-name m --encoder dsv32 --random-seed 0 --context-length 512
        --page-size 16 --threads 1)

start_server "$TMP/w1.log" "${WORKER[@]}"
W1_PID=$SERVER_PID W1=$BASE_URL
start_server "$TMP/w2.log" "${WORKER[@]}"
W2_PID=$SERVER_PID W2=$BASE_URL
SERVER_PID=""

# start_router LOG ARGS...: sets ROUTER_PID and ROUTER.
start_router() {
  local log=$1
  shift
  : >"$log"
  "$BIN" router --port 0 "$@" >"$log" 2>&1 &
  ROUTER_PID=$!
  for _ in $(seq 1 100); do
    grep -q "fired up and ready" "$log" && break
    kill -0 "$ROUTER_PID" 2>/dev/null || { cat "$log"; fail "the router exited during startup"; }
    sleep 0.1
  done
  ROUTER=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -1)
  [ -n "$ROUTER" ] || { cat "$log"; fail "no router URL in its log"; }
}
stop_router() {
  kill -TERM "$ROUTER_PID"
  local rc=0
  wait "$ROUTER_PID" || rc=$?
  ROUTER_PID=""
  [ $rc = 0 ] || fail "the router exited with $rc after SIGTERM"
}

chat() {  # URL PROMPT [EXTRA]: greedy chat completion
  curl -sf "$1/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}],\"temperature\":0,\"max_tokens\":16${3:-}}"
}
outputs() {  # URL: everything greedy, one line each (ids and timestamps left out)
  jget "$(chat "$1" 'Tell me about routers.')" 'j["choices"][0]["message"]["content"]'
  jget "$(chat "$1" 'Count to ten.')" 'j["choices"][0]["message"]["content"]'
  curl -sfN "$1/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"Stream please."}],"stream":true,"max_tokens":12,"temperature":0}' |
    sse_chat_text
  jget "$(curl -sf "$1/generate" -H 'Content-Type: application/json' \
    -d '{"text":["The capital of France is","1, 2, 3, 4,"],"sampling_params":{"temperature":0,"max_new_tokens":12}}')" \
    '[x["text"] for x in j]'
  jget "$(curl -sf "$1/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","prompt":"Once upon a time","max_tokens":12,"temperature":0}')" 'j["choices"][0]["text"]'
}

outputs "$W1" >"$TMP/direct.txt"
echo "direct outputs ($SECONDS s)"
[ "$(wc -l <"$TMP/direct.txt")" = 5 ] || fail "direct outputs: $(cat "$TMP/direct.txt")"

# ---------------------------------------------------------------- identical through the router, every policy
for policy in round_robin cache_aware random power_of_two; do
  start_router "$TMP/router.log" --worker-urls "$W1" "$W2" --policy "$policy"
  outputs "$ROUTER" >"$TMP/routed.txt"
  outputs "$ROUTER" >>"$TMP/routed.txt"  # twice: round_robin then asks both workers
  diff <(cat "$TMP/direct.txt" "$TMP/direct.txt") "$TMP/routed.txt" >/dev/null ||
    fail "$policy: outputs through the router differ: $(diff <(cat "$TMP/direct.txt" "$TMP/direct.txt") "$TMP/routed.txt")"
  [ "$policy" = cache_aware ] || { stop_router; echo "$policy: outputs identical to one worker ($SECONDS s)"; continue; }
  models=$(curl -sf "$ROUTER/v1/models")
  [ "$(jget "$models" 'j["data"][0]["id"]')" = m ] || fail "/v1/models through the router: $models"
  metrics=$(curl -sf "$ROUTER/metrics")
  grep -q '^sgl_router_requests_total{route="/v1/chat/completions"} 6$' <<<"$metrics" || fail "chat count: $metrics"
  grep -q '^sgl_router_requests_total{route="/generate"} 2$' <<<"$metrics" || fail "generate count: $metrics"
  grep -q '^sgl_router_active_workers 2$' <<<"$metrics" || fail "active workers: $metrics"
  # Every routed request is counted on some worker: the per-worker counts add up.
  sum=$(python3 -c '
import re, sys
print(sum(int(v) for v in re.findall(r"^sgl_router_processed_requests_total\{[^}]*\} (\d+)$", sys.argv[1], re.M)))' "$metrics")
  [ "$sum" = 11 ] || fail "processed requests add up to $sum, want 11 (10 routed + /v1/models): $metrics"
  # Same prompt again: cache-aware routing sends it where its prefix is.
  hits=$(grep '^sgl_router_cache_hits_total' <<<"$metrics" | awk '{print $2}')
  [ "$hits" -ge 5 ] || fail "cache hits $hits after repeating every prompt: $metrics"
  stop_router
  echo "$policy: outputs identical to one worker; /v1/models; /metrics ($SECONDS s)"
done

# ---------------------------------------------------------------- API key at the router
start_router "$TMP/key.log" --worker-urls "$W1" "$W2" --api-key sk-test
code=$(curl -s -o "$TMP/401.json" -w '%{http_code}' "$ROUTER/generate" -d '{"text":"x"}')
[ "$code" = 401 ] && [ "$(jget "$(cat "$TMP/401.json")" 'j["error"]["code"]')" = invalid_api_key ] ||
  fail "no key: HTTP $code $(cat "$TMP/401.json")"
# The key reaches the workers (which run without one and ignore it): a normal answer.
curl -sf "$ROUTER/generate" -H 'Authorization: Bearer sk-test' \
  -d '{"text":"hi","sampling_params":{"max_new_tokens":2}}' >/dev/null || fail "with the key"
stop_router
echo "API key enforced at the router"

# ---------------------------------------------------------------- 200 streams, some hanging up
start_router "$TMP/load.log" --worker-urls "$W1" "$W2" --policy round_robin
PORT=${ROUTER##*:}
"$BIN" bench serving --backend sglang-oai-chat --port "$PORT" --dataset-name random --random-input-len 24 \
  --random-output-len 8 --random-range-ratio 1 --num-prompts 200 --max-concurrency 200 --tokenizer "$MODEL" \
  --output-file "$TMP/bench.jsonl" >"$TMP/bench.txt" 2>&1 &
BENCH_PID=$!
python3 "$(dirname "$0")/router_streams.py" "$ROUTER" 40 20 || fail "streams with disconnects through the router"
wait "$BENCH_PID" || { cat "$TMP/bench.txt"; fail "bench serving through the router failed"; }
grep -Eq "^Successful requests:\s+200\b" "$TMP/bench.txt" || { cat "$TMP/bench.txt"; fail "not all 200 bench requests succeeded"; }
grep -Eq "^Total generated tokens:\s+1600\b" "$TMP/bench.txt" || { cat "$TMP/bench.txt"; fail "want 200 x 8 generated tokens"; }
metrics=$(curl -sf "$ROUTER/metrics")
n=$(grep "^sgl_router_client_disconnects_total" <<<"$metrics" | awk "{print \$2}")
# (A client may hang up only after its whole answer was sent: at least one did in time.)
[ "$n" -ge 1 ] && [ "$n" -le 20 ] || fail "disconnects at the router: $n"
grep -q '^sgl_router_running_requests{.*} [1-9]' <<<"$metrics" && fail "requests still in flight at the router: $metrics"
# Each worker: nothing running, and every used page is its prefix cache's (the requests' own went back).
for w in "$W1" "$W2"; do
  for _ in $(seq 1 100); do
    info=$(curl -sf "$w/get_server_info")
    [ "$(jget "$info" "j['internal_states'][0]['num_running_reqs']")" = 0 ] &&
      [ "$(jget "$info" "j['internal_states'][0]['num_queue_reqs']")" = 0 ] && break
    sleep 0.05
  done
  s() { jget "$info" "j['internal_states'][0]['$1']"; }
  [ "$(s num_running_reqs)" = 0 ] && [ "$(s num_queue_reqs)" = 0 ] || fail "$w: requests still running: $info"
  [ "$(s used_pages)" = "$(s cached_pages)" ] || fail "$w: pages held by requests: $info"
done
grep -q "client disconnected" "$TMP/w1.log" "$TMP/w2.log" || fail "no worker saw a client disconnect"
echo "200 concurrent streams + $n hang-ups through the router: all others complete, no pages held ($SECONDS s)"

# ---------------------------------------------------------------- a worker dies, then both
curl -sf "$ROUTER/generate" -d '{"text":"warm","sampling_params":{"max_new_tokens":1}}' >/dev/null
kill -KILL "$W2_PID"
wait "$W2_PID" 2>/dev/null || true
W2_PID=""
for i in 1 2 3 4; do
  chat "$ROUTER" "Still there? $i" >/dev/null || fail "request $i failed with one worker dead"
done
metrics=$(curl -sf "$ROUTER/metrics")
grep -q "^sgl_router_worker_health{worker=\"$W2\"} 0$" <<<"$metrics" || fail "dead worker still healthy: $metrics"
grep -q "^sgl_router_active_workers 1$" <<<"$metrics" || fail "active workers after a kill: $metrics"
kill -KILL "$W1_PID"
wait "$W1_PID" 2>/dev/null || true
W1_PID=""
code=$(curl -s -o "$TMP/503.json" -w '%{http_code}' "$ROUTER/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"m","messages":[{"role":"user","content":"anyone?"}]}')
[ "$code" = 503 ] || fail "all workers dead: HTTP $code $(cat "$TMP/503.json")"
msg=$(jget "$(cat "$TMP/503.json")" 'j["error"]["message"]')
[[ $msg == *"no worker could serve"* || $msg == *"no healthy worker"* ]] || fail "503 message: $msg"
code=$(curl -s -o /dev/null -w '%{http_code}' "$ROUTER/health")
[ "$code" = 503 ] || fail "/health with every worker dead: $code"
stop_router
echo "a dead worker is routed around; all dead -> 503 ($msg)"
echo ok
