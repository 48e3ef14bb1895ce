#!/usr/bin/env bash
# `dsserve serve` on the e2e model, driven with curl: every bad-input case, limits, the API key,
# abort on disconnect (stream or not) with the pages freed, /abort_request, prefix-cache hits on a
# repeated system prompt, tool results in the prompt, native /generate, metrics, graceful shutdown.
# usage: test_curl_api.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
command -v curl >/dev/null || skip "curl missing"
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT

start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --served-model-name e2e-model \
  --reasoning-parser deepseek-v3 --tool-call-parser deepseekv32 --enable-metrics --page-size 16 \
  --max-total-tokens 8192 --threads 1

# call METHOD PATH [BODY]: prints the status; the body lands in $TMP/body.
call() {
  local args=(-s -o "$TMP/body" -w '%{http_code}' -X "$1" "$BASE_URL$2")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${args[@]}"
}
body() { cat "$TMP/body"; }
expect() {  # STATUS METHOD PATH [BODY]
  local want=$1
  shift
  local got
  got=$(call "$@")
  [ "$got" = "$want" ] || fail "$1 $2 ${3:-}: status $got, expected $want: $(body)"
}
expect_error() {  # STATUS PARAM PATH BODY: an OpenAI error object naming PARAM ("-": any)
  expect "$1" POST "$3" "$4"
  [ "$(jget "$(body)" 'j["error"]["message"] != ""')" = true ] || fail "no error message: $(body)"
  [ "$2" = - ] || [ "$(jget "$(body)" 'j["error"]["param"]')" = "$2" ] || fail "$4: param is not $2: $(body)"
}
info() { curl -s "$BASE_URL/get_server_info"; }
state() { jget "$(info)" "j['internal_states'][0]['$1']"; }

CHAT=/v1/chat/completions
msg() { echo "{\"model\": \"e2e-model\", \"messages\": [{\"role\": \"user\", \"content\": \"$1\"}]${2:+, $2}}"; }

# ---------------------------------------------------------------- bad input
expect_error 400 - $CHAT '{"messages": [{"role": "user", "content": "hi"}'
expect_error 400 messages $CHAT '{"model": "e2e-model"}'
expect_error 400 messages $CHAT '{"messages": []}'
expect_error 400 messages $CHAT '{"messages": [{"role": "robot", "content": "x"}]}'
expect_error 400 max_tokens $CHAT "$(msg hi '"max_tokens": "ten"')"
expect_error 400 max_tokens $CHAT "$(msg hi '"max_tokens": -1')"
expect_error 400 temperature $CHAT "$(msg hi '"temperature": -1')"
expect_error 400 top_p $CHAT "$(msg hi '"top_p": 7')"
expect_error 400 n $CHAT "$(msg hi '"n": 0')"
expect_error 400 messages $CHAT "$(msg hi '"max_tokens": 100000')"
long=$(printf 'word %.0s' $(seq 1 5000))
expect_error 400 messages $CHAT "$(msg "$long")"
jget "$(body)" 'j["error"]["message"]' | grep -q "context length" || fail "too-long prompt: $(body)"
expect_error 404 model $CHAT "$(msg hi '"model": "gpt-17"')"
[ "$(jget "$(body)" 'j["error"]["code"]')" = model_not_found ] || fail "unknown model code: $(body)"
expect_error 400 prompt /v1/completions '{"prompt": [1, -5]}'
expect_error 400 sampling_params.warp /generate '{"text": "x", "sampling_params": {"warp": 1}}'
expect 404 GET /v1/nothing
expect 405 GET $CHAT
# 413: a body over the limit is refused from its Content-Length, before it is sent.
exec 3<>"/dev/tcp/127.0.0.1/${BASE_URL##*:}"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n' >&3
read -r status_line <&3
exec 3<&-
[[ $status_line == "HTTP/1.1 413"* ]] || fail "oversized body: $status_line"
[ "$(state used_pages)" = 0 ] || fail "pages used after bad requests"

# ---------------------------------------------------------------- basics
expect 200 GET /health
expect 200 GET /health_generate
expect 200 GET /v1/models
[ "$(jget "$(body)" 'j["data"][0]["id"]')" = e2e-model ] || fail "models: $(body)"
expect 200 GET /get_model_info
expect 200 POST /v1/tokenize '{"prompt": "你好，世界 hello", "add_special_tokens": false}'
ids=$(jget "$(body)" 'j["tokens"]')
expect 200 POST /v1/detokenize "{\"tokens\": $ids}"
[ "$(jget "$(body)" 'j["text"]')" = "你好，世界 hello" ] || fail "detokenize: $(body)"

# ---------------------------------------------------------------- tool results reach the prompt
cat >"$TMP/tools.json" <<'JSON'
{"model": "e2e-model", "max_tokens": 3,
 "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
 "messages": [{"role": "user", "content": "Weather in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "content": "sunny and 21 degrees"}]}
JSON
expect 200 POST $CHAT "$(cat "$TMP/tools.json")"
prompt_tokens=$(jget "$(body)" 'j["usage"]["prompt_tokens"]')
"$BIN" chat-template --tokenizer "$MODEL" --encoder dsv32 --request "$TMP/tools.json" >"$TMP/prompt.txt"
grep -q "sunny and 21 degrees" "$TMP/prompt.txt" || fail "tool result not in the prompt"
grep -q "get_weather" "$TMP/prompt.txt" || fail "tool not in the prompt"
expect 200 POST /v1/tokenize "$(python3 -c 'import json,sys; print(json.dumps({"prompt": open(sys.argv[1]).read(), "add_special_tokens": False}))' "$TMP/prompt.txt")"
[ "$(jget "$(body)" 'j["count"]')" = "$prompt_tokens" ] || fail "prompt tokens $prompt_tokens != tokenized chat-template output $(body)"

# ---------------------------------------------------------------- prefix cache on a repeated system prompt
sys=$(printf 'You are a careful assistant who answers in detail. %.0s' $(seq 1 12))
chat_sys() { echo "{\"messages\": [{\"role\": \"system\", \"content\": \"$sys\"}, {\"role\": \"user\", \"content\": \"$1\"}], \"max_tokens\": 2}"; }
expect 200 POST $CHAT "$(chat_sys 'first question')"
expect 200 POST $CHAT "$(chat_sys 'second, different question')"
cached=$(jget "$(body)" 'j["usage"]["prompt_tokens_details"]["cached_tokens"]')
prompt=$(jget "$(body)" 'j["usage"]["prompt_tokens"]')
[ "$cached" -ge 64 ] && [ "$cached" -lt "$prompt" ] || fail "cached_tokens $cached of $prompt on a repeated system prompt"

# ---------------------------------------------------------------- disconnect aborts and frees pages
wait_idle() {
  for _ in $(seq 1 100); do
    [ "$(state num_running_reqs)" = 0 ] && [ "$(state num_queue_reqs)" = 0 ] && return 0
    sleep 0.05
  done
  fail "requests still running: $(info)"
}
wait_idle
before=$(grep -c "client disconnected" "$TMP/server.log" || true)
for stream in true false; do
  set +e
  curl -s -N --max-time 1 "$BASE_URL$CHAT" -H 'Content-Type: application/json' \
    -d "$(msg 'tell me a long story' "\"max_tokens\": 3000, \"stream\": $stream, \"ignore_eos\": true")" >/dev/null
  rc=$?
  set -e
  [ $rc = 28 ] || fail "the long request ended by itself (curl rc $rc)"
  wait_idle
  # Every used page is the prefix cache's now: the request's own pages went back to the pool.
  [ "$(state used_pages)" = "$(state cached_pages)" ] || fail "pages not freed after disconnect: $(info)"
done
after=$(grep -c "client disconnected" "$TMP/server.log" || true)
[ $((after - before)) = 2 ] || fail "expected two disconnect log lines, got $((after - before))"

# ---------------------------------------------------------------- /abort_request and native /generate
curl -s "$BASE_URL/generate" -H 'Content-Type: application/json' \
  -d '{"input_ids": [0, 100, 200, 300], "rid": "e2e-abort", "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true}}' \
  >"$TMP/aborted.json" &
gen_pid=$!
for _ in $(seq 1 100); do [ "$(state num_running_reqs)" = 1 ] && break; sleep 0.05; done
expect 200 POST /abort_request '{"rid": "e2e-abort"}'
wait $gen_pid
[ "$(jget "$(cat "$TMP/aborted.json")" 'j["meta_info"]["finish_reason"]["type"]')" = abort ] || fail "abort: $(cat "$TMP/aborted.json")"
curl -s -N "$BASE_URL/generate" -H 'Content-Type: application/json' \
  -d '{"text": "Once upon a time", "stream": true, "sampling_params": {"max_new_tokens": 5, "temperature": 0}}' >"$TMP/gen.sse"
grep -q '^data: \[DONE\]$' "$TMP/gen.sse" || fail "no [DONE] in /generate stream"
last=$(grep '^data: {' "$TMP/gen.sse" | tail -1 | cut -c 7-)
[ "$(jget "$last" 'j["meta_info"]["finish_reason"]["type"]')" = length ] || fail "generate stream end: $last"
[ "$(jget "$last" 'j["meta_info"]["completion_tokens"]')" = 5 ] || fail "generate tokens: $last"
expect 200 POST /generate '{"text": "Once upon a time", "sampling_params": {"max_new_tokens": 5, "temperature": 0}}'
[ "$(jget "$(body)" 'j["text"]')" = "$(jget "$last" 'j["text"]')" ] || fail "greedy /generate stream and whole differ"

# ---------------------------------------------------------------- metrics, flush
expect 200 GET /metrics
for name in sglang:prompt_tokens_total sglang:generation_tokens_total sglang:cached_tokens_total \
  sglang:num_running_reqs sglang:num_queue_reqs sglang:token_usage sglang:cache_hit_rate \
  sglang:time_to_first_token_seconds_bucket sglang:inter_token_latency_seconds_bucket \
  sglang:e2e_request_latency_seconds_count; do
  grep -q "^$name{" "$TMP/body" || fail "metric $name missing"
done
hits=$(grep '^sglang:cached_tokens_total{' "$TMP/body" | awk '{print $2}')
[ "${hits%.*}" -gt 0 ] || fail "cached tokens metric $hits"
wait_idle
expect 200 POST /flush_cache
[ "$(state cached_pages)" = 0 ] || fail "flush_cache left cached pages: $(info)"

# ---------------------------------------------------------------- graceful shutdown with a stream open
curl -s -N "$BASE_URL$CHAT" -H 'Content-Type: application/json' \
  -d "$(msg 'a long answer please' '"max_tokens": 3000, "ignore_eos": true, "stream": true')" >"$TMP/open.sse" &
open_pid=$!
for _ in $(seq 1 100); do [ "$(state num_running_reqs)" = 1 ] && break; sleep 0.05; done
stop_server
wait $open_pid || true
grep -q '"finish_reason":"abort"' "$TMP/open.sse" || fail "open stream did not end with abort: $(tail -c 300 "$TMP/open.sse")"
grep -q '^data: \[DONE\]$' "$TMP/open.sse" || fail "open stream did not end with [DONE]"

# ---------------------------------------------------------------- the API key
start_server "$TMP/server_key.log" --model-path "$MODEL" --encoder dsv32 --api-key sk-e2e --max-total-tokens 1024
expect 401 GET /v1/models
[ "$(jget "$(body)" 'j["error"]["code"]')" = invalid_api_key ] || fail "401 body: $(body)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sk-wrong' "$BASE_URL/v1/models")
[ "$code" = 401 ] || fail "wrong key: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sk-e2e' "$BASE_URL/v1/models")
[ "$code" = 200 ] || fail "right key: $code"
expect 401 POST $CHAT "$(msg hi)"
expect 200 GET /health
stop_server
echo "ok"
