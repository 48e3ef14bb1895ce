#!/usr/bin/env bash
# Prefill/decode disaggregation (issue 21): a prefill server, a decode server and `dsserve router
# --pd-disaggregation` as processes on localhost. Greedy chat (n = 2 too), streaming chat, batched /generate
# and completions through the pair identical to one plain server, also with --tp 2 on both sides and with
# --tp 2 prefilling for --tp 1; 200 concurrent streams with 100 hang-ups -> the rest complete and neither side
# holds a page or a KV buffer for a request afterwards; KV that never comes -> the decode side's request fails after the transfer
# timeout and frees its pages; a killed decode or prefill server -> a clear 503 from the router; FP8 KV rows (their
# scales in them) and the MTP layer's pools, speculative decoding on both sides -> identical again.
# usage: test_pd.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
PIDS=()
kill_all() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap 'kill_all; cleanup; rm -rf "$TMP"' EXIT
COMMON=(--model-path "$MODEL" --served-model-name m --encoder dsv32 --random-seed 0 --context-length 512
        --page-size 16 --threads 1 --enable-metrics --constrained-json-disable-any-whitespace)
# The transfer timeout counts from the decode side's registration, so it includes the prefill server's queue
# and compute: under the sanitizers on two cores the load below (one prefill batch of ~200 prompts) waits
# ~3 s for its KV (measured, 2026-12-05; 0.2-0.9 s in a release build). 4 s failed 57 of 200 clients once
# in CI; 30 s is the load's headroom, and the timeout case runs on its own pair with a short one.
PD=(--disaggregation-transfer-timeout 30)

# A probe: a build without UCX refuses --disaggregation-mode, and this test has nothing to run.
if ! out=$("$BIN" serve --disaggregation-mode prefill --model-path /nonexistent 2>&1) &&
   grep -q "built without UCX" <<<"$out"; then
  skip "dsserve was built without UCX"
fi

chat() {  # URL PROMPT [EXTRA]: greedy chat completion
  curl -sf "$1/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}],\"temperature\":0,\"max_tokens\":16${3:-}}"
}
outputs() {  # URL: everything greedy, one line each
  jget "$(chat "$1" 'Tell me about disaggregation.')" 'j["choices"][0]["message"]["content"]'
  jget "$(chat "$1" 'Count to ten.' ',"n":2')" '[c["message"]["content"] for c in j["choices"]]'
  curl -sfN "$1/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"Stream please."}],"stream":true,"max_tokens":12,"temperature":0}' |
    sse_chat_text
  jget "$(curl -sf "$1/generate" -H 'Content-Type: application/json' \
    -d '{"text":["The capital of France is","1, 2, 3, 4,"],"sampling_params":{"temperature":0,"max_new_tokens":12}}')" \
    '[x["text"] for x in j]'
  jget "$(curl -sf "$1/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","prompt":"Once upon a time","max_tokens":12,"temperature":0}')" 'j["choices"][0]["text"]'
  # A fixed-key schema: the grammar forces the keys (jump-forward), on the decode side from the first token on.
  jget "$(chat "$1" 'A person as JSON.' ',"max_tokens":40,"response_format":{"type":"json_schema","json_schema":{"name":"p",
    "schema":{"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer"}},
    "required":["name","age"],"additionalProperties":false}}}')" 'j["choices"][0]["message"]["content"]'
}

# start_pd NAME PREFILL_ARGS -- DECODE_ARGS: a prefill and a decode server; sets PRE, PRE_PID, BOOT, DEC, DEC_PID.
start_pd() {
  local name=$1
  shift
  local pre=() dec=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do pre+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  dec=("$@")
  start_server "$TMP/$name-prefill.log" "${COMMON[@]}" "${PD[@]}" --disaggregation-mode prefill \
    --disaggregation-bootstrap-port 0 "${pre[@]}"
  PRE=$BASE_URL PRE_PID=$SERVER_PID
  PIDS+=("$SERVER_PID")
  BOOT=$(grep -o 'bootstrap port [0-9]*' "$TMP/$name-prefill.log" | awk '{print $3}')
  [ -n "$BOOT" ] || fail "no bootstrap port in the prefill server's log"
  start_server "$TMP/$name-decode.log" "${COMMON[@]}" "${PD[@]}" --disaggregation-mode decode "${dec[@]}"
  DEC=$BASE_URL DEC_PID=$SERVER_PID
  PIDS+=("$SERVER_PID")
  SERVER_PID=""
}
ROUTER_PID=""
start_router() {  # LOG: the PD router over PRE/BOOT and DEC; sets ROUTER
  : >"$1"
  "$BIN" router --port 0 --pd-disaggregation --prefill "$PRE" "$BOOT" --decode "$DEC" \
    --health-check-interval-secs 1 >"$1" 2>&1 &
  ROUTER_PID=$!
  PIDS+=("$ROUTER_PID")
  for _ in $(seq 1 100); do
    grep -q "fired up and ready" "$1" && break
    kill -0 "$ROUTER_PID" 2>/dev/null || { cat "$1"; fail "the router exited during startup"; }
    sleep 0.1
  done
  ROUTER=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$1" | head -1)
}
stop_pids() {  # PIDS...: SIGTERM, then each must exit 0 (under the sanitizers: no leak, no UB)
  local p rc
  for p in "$@"; do
    kill -TERM "$p"
    rc=0
    wait "$p" || rc=$?
    [ "$rc" = 0 ] || fail "process $p exited with $rc after SIGTERM"
  done
}
# idle URL: waits until nothing runs there, then checks that every used page is the prefix cache's.
idle() {
  local info=""
  for _ in $(seq 1 100); do
    info=$(curl -sf "$1/get_server_info")
    [ "$(jget "$info" "j['internal_states'][0]['num_running_reqs']")" = 0 ] &&
      [ "$(jget "$info" "j['internal_states'][0]['num_queue_reqs']")" = 0 ] &&
      [ "$(jget "$info" "j['internal_states'][0]['used_pages']")" = "$(jget "$info" "j['internal_states'][0]['cached_pages']")" ] &&
      return 0
    sleep 0.05
  done
  fail "$1: requests or their pages still held: $info"
}

# ---------------------------------------------------------------- the reference: one plain server
start_server "$TMP/plain.log" "${COMMON[@]}"
PIDS+=("$SERVER_PID")
outputs "$BASE_URL" >"$TMP/direct.txt"
stop_server
[ "$(wc -l <"$TMP/direct.txt")" = 6 ] || fail "direct outputs: $(cat "$TMP/direct.txt")"
echo "plain server's outputs ($SECONDS s)"

# ---------------------------------------------------------------- identical through a prefill/decode pair
start_pd one
start_router "$TMP/router.log"
outputs "$ROUTER" >"$TMP/pd.txt"
outputs "$ROUTER" >>"$TMP/pd.txt"  # again: now with the prefix caches warm on both sides
diff <(cat "$TMP/direct.txt" "$TMP/direct.txt") "$TMP/pd.txt" >/dev/null ||
  fail "outputs through prefill/decode differ: $(diff <(cat "$TMP/direct.txt" "$TMP/direct.txt") "$TMP/pd.txt")"
grep -q "disaggregation: prefill server, bootstrap port $BOOT, KV over ucx" "$TMP/one-prefill.log" || fail "prefill banner"
[ "$(jget "$(curl -sf "$DEC/get_server_info")" 'j["disaggregation_mode"]')" = decode ] || fail "decode server info"
idle "$PRE"
idle "$DEC"
echo "chat, n = 2, streaming, batched /generate, completions through the pair: identical to one server ($SECONDS s)"
# The transfer's counters: every prompt sent was received, byte for byte.
metric() { curl -sf "$1/metrics" | awk -v n="$2" 'index($1, n "{") == 1 {print $2}'; }
sent=$(metric "$PRE" dsserve:pd_kv_sent_total) got=$(metric "$DEC" dsserve:pd_kv_received_total)
[ -n "$sent" ] && [ "$sent" -ge 12 ] && [ "$sent" = "$got" ] || fail "pd_kv_sent_total $sent vs pd_kv_received_total $got"
[ "$(metric "$PRE" dsserve:pd_kv_sent_bytes_total)" = "$(metric "$DEC" dsserve:pd_kv_received_bytes_total)" ] ||
  fail "KV bytes sent $(metric "$PRE" dsserve:pd_kv_sent_bytes_total) != received $(metric "$DEC" dsserve:pd_kv_received_bytes_total)"
echo "metrics: $sent prompts' KV sent and received, $(metric "$DEC" dsserve:pd_kv_received_bytes_total) bytes"

# ---------------------------------------------------------------- hang-ups: nothing lost, no page held
python3 "$(dirname "$0")/router_streams.py" "$ROUTER" 200 100 || fail "streams with disconnects through the PD router"
idle "$PRE"
idle "$DEC"
outputs "$ROUTER" >"$TMP/after.txt"
diff "$TMP/direct.txt" "$TMP/after.txt" >/dev/null || fail "outputs after the hang-ups differ"
# Nor a KV buffer: every packed KV went back to its pool once sent (prefill) or written into pages (decode).
for side in "$PRE" "$DEC"; do
  for _ in $(seq 1 50); do [ "$(metric "$side" dsserve:pd_kv_buffer_lent_bytes)" = 0 ] && break; sleep 0.1; done
  [ "$(metric "$side" dsserve:pd_kv_buffer_lent_bytes)" = 0 ] ||
    fail "$side holds $(metric "$side" dsserve:pd_kv_buffer_lent_bytes) bytes of KV buffers after the load"
done
[ "$(metric "$PRE" dsserve:pd_kv_buffer_kept_bytes)" -gt 0 ] || fail "the prefill side kept no KV buffer for reuse"
[ "$(metric "$DEC" dsserve:pd_kv_failed_total)" = 0 ] || fail "$(metric "$DEC" dsserve:pd_kv_failed_total) transfers failed under the load"
wait_avg=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / max(1, int(sys.argv[2])):.2f}')" \
  "$(metric "$DEC" dsserve:pd_kv_wait_seconds_total)" "$(metric "$DEC" dsserve:pd_kv_received_total)")
echo "200 streams, 100 hang-ups: the rest complete; no page and no KV buffer held on either side;" \
  "KV waited $wait_avg s on average (timeout ${PD[1]} s) ($SECONDS s)"

# ---------------------------------------------------------------- a killed decode server: a clear error
kill -KILL "$DEC_PID"
wait "$DEC_PID" 2>/dev/null || true
code=$(curl -s -o "$TMP/dead.json" -w '%{http_code}' "$ROUTER/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"m","messages":[{"role":"user","content":"anyone?"}],"max_tokens":4}')
msg=$(jget "$(cat "$TMP/dead.json")" 'j["error"]["message"]')
[ "$code" = 503 ] && [[ $msg == *decode* ]] || fail "dead decode server: HTTP $code $(cat "$TMP/dead.json")"
idle "$PRE"
stop_pids "$ROUTER_PID" "$PRE_PID"
echo "a killed decode server -> 503: $msg ($SECONDS s)"

# ---------------------------------------------------------------- KV that never comes: timeout, pages back
# A pair of its own with a short timeout (the load above needs a long one).
PD=(--disaggregation-transfer-timeout 2)
start_pd short
room() { echo "\"bootstrap_host\":\"127.0.0.1\",\"bootstrap_port\":$BOOT,\"bootstrap_room\":$1"; }
code=$(curl -s -o "$TMP/timeout.json" -w '%{http_code}' "$DEC/generate" \
  -d "{\"text\":\"nobody prefills this\",\"sampling_params\":{\"max_new_tokens\":4},$(room 77)}")
msg=$(cat "$TMP/timeout.json")
[[ $msg == *"did not arrive from the prefill server"* ]] || fail "decode side without KV: HTTP $code $msg"
idle "$DEC"
# The prefill side's KV that no decode server asks for is dropped after the timeout.
curl -sf "$PRE/generate" -d "{\"text\":\"nobody decodes this\",\"sampling_params\":{\"max_new_tokens\":4},$(room 78)}" >/dev/null
for _ in $(seq 1 100); do grep -q "room 78: no decode server asked" "$TMP/short-prefill.log" && break; sleep 0.1; done
grep -q "room 78: no decode server asked" "$TMP/short-prefill.log" || fail "the prefill side kept room 78's KV"
idle "$PRE"
stop_pids "$DEC_PID" "$PRE_PID"
PD=(--disaggregation-transfer-timeout 30)
echo "a transfer that never happens times out on both sides, pages free ($SECONDS s)"

# ---------------------------------------------------------------- tensor parallelism: every rank's pools
start_pd tp2 --tp 2 -- --tp 2
start_router "$TMP/router-tp.log"
outputs "$ROUTER" >"$TMP/tp.txt"
diff "$TMP/direct.txt" "$TMP/tp.txt" >/dev/null || fail "--tp 2 pair: outputs differ: $(diff "$TMP/direct.txt" "$TMP/tp.txt")"
idle "$PRE"
idle "$DEC"
stop_pids "$ROUTER_PID" "$DEC_PID"
echo "--tp 2 on both sides: identical ($SECONDS s)"
# Ranks that differ: the latent cache is replicated on every rank, so one rank's rows serve any --tp.
start_server "$TMP/tp1-decode.log" "${COMMON[@]}" "${PD[@]}" --disaggregation-mode decode
DEC=$BASE_URL DEC_PID=$SERVER_PID
PIDS+=("$SERVER_PID")
SERVER_PID=""
start_router "$TMP/router-mix.log"
outputs "$ROUTER" >"$TMP/mix.txt"
diff "$TMP/direct.txt" "$TMP/mix.txt" >/dev/null || fail "--tp 2 prefill, --tp 1 decode: outputs differ: $(diff "$TMP/direct.txt" "$TMP/mix.txt")"
idle "$PRE"
idle "$DEC"
echo "--tp 2 prefill with a --tp 1 decode server: identical ($SECONDS s)"
# A killed prefill server: a clear 503, and the decode server holds nothing for it.
kill -KILL "$PRE_PID"
wait "$PRE_PID" 2>/dev/null || true
code=$(curl -s -o "$TMP/dead-pre.json" -w '%{http_code}' "$ROUTER/generate" -d '{"text":"anyone?","sampling_params":{"max_new_tokens":4}}')
msg=$(jget "$(cat "$TMP/dead-pre.json")" 'j["error"]["message"]')
[ "$code" = 503 ] && [[ $msg == *prefill* ]] || fail "dead prefill server: HTTP $code $(cat "$TMP/dead-pre.json")"
idle "$DEC"
stop_pids "$ROUTER_PID" "$DEC_PID"
echo "a killed prefill server -> 503: $msg ($SECONDS s)"

# ---------------------------------------------------------------- FP8 KV rows (with their scales) and the MTP layer's pools
FP8=(--kv-cache-dtype fp8_e4m3 --speculative-algorithm EAGLE --speculative-num-steps 2)
start_server "$TMP/plain-fp8.log" "${COMMON[@]}" "${FP8[@]}"
PIDS+=("$SERVER_PID")
# The decode side speculates as one server would: its first step verifies the prefill side's drafts, so
# the verify steps and drafts per request are one server's too.
spec_meta() {  # URL: a greedy /generate's tokens and speculative counts
  jget "$(curl -sf "$1/generate" -H 'Content-Type: application/json' -d '{"text":"Speculate about this.",
    "sampling_params":{"temperature":0,"max_new_tokens":16,"ignore_eos":true}}')" \
    '[j["output_ids"], j["meta_info"]["spec_verify_ct"], j["meta_info"]["spec_draft_token_num"]]'
}
outputs "$BASE_URL" >"$TMP/direct-fp8.txt"
spec_meta "$BASE_URL" >>"$TMP/direct-fp8.txt"
stop_server
start_pd fp8 "${FP8[@]}" -- "${FP8[@]}"
start_router "$TMP/router-fp8.log"
outputs "$ROUTER" >"$TMP/pd-fp8.txt"
spec_meta "$ROUTER" >>"$TMP/pd-fp8.txt"
diff "$TMP/direct-fp8.txt" "$TMP/pd-fp8.txt" >/dev/null ||
  fail "fp8 KV + MTP pair: outputs or speculative counts differ: $(diff "$TMP/direct-fp8.txt" "$TMP/pd-fp8.txt")"
[[ $(tail -1 "$TMP/pd-fp8.txt") == *"], 0, 0]" ]] && fail "the decode side did not speculate: $(tail -1 "$TMP/pd-fp8.txt")"
idle "$PRE"
idle "$DEC"
stop_pids "$ROUTER_PID" "$DEC_PID" "$PRE_PID"
echo "--kv-cache-dtype fp8_e4m3 with speculative decoding on both sides: identical to one such server, the same verify steps and drafts ($SECONDS s)"
echo ok
