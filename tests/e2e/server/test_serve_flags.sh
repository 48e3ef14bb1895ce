#!/usr/bin/env bash
# `dsserve serve` flags: clear errors (unknown flags with close matches, parallel layouts, cuda, parsers)
# and the KV pool plan of the banner.
# usage: test_serve_flags.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT

refused() {  # EXPECTED-TEXT ARGS...: exit 1 with an error containing the text, before loading anything
  local want=$1 out rc=0
  shift
  out=$("$BIN" serve --model-path "$MODEL" "$@" 2>&1) || rc=$?
  [ $rc = 1 ] || fail "serve $*: exit $rc, expected 1: $out"
  [[ $out == *"$want"* ]] || fail "serve $*: expected '$want' in: $out"
}
refused "unknown flag --tp-sise (did you mean --tp-size" --tp-sise 2
refused "unknown flag --max-runing-requests (did you mean --max-running-requests" --max-runing-requests 4
refused "--tp 3: the model's attention heads (num_attention_heads) (4) does not divide by 3" --tp 3
refused "--ep must be 1 or equal to --tp" --tp 2 --ep 4
refused "--enable-dp-attention needs --dp to divide --tp (got dp 3, tp 2)" --tp 2 --dp 3 --enable-dp-attention
refused "--moe-dense-tp-size 2: only 1 is supported" --tp 2 --dp 2 --enable-dp-attention --moe-dense-tp-size 2
refused "--moe-dense-tp-size 1 needs --enable-dp-attention" --tp 2 --moe-dense-tp-size 1
refused "--nnodes 2: --dist-init-addr HOST:PORT (node 0's address) is required" --nnodes 2
refused "--dist-init-addr 'nohost': expected HOST:PORT" --nnodes 2 --dist-init-addr nohost
refused "--node-rank 2 outside --nnodes 2" --nnodes 2 --node-rank 2 --dist-init-addr 127.0.0.1:1
refused "--nnodes 2 with --dp 2: not available yet" --nnodes 2 --dist-init-addr 127.0.0.1:1 --dp 2
refused "--nnodes 2: the 3 ranks (tp x dp) do not divide over the nodes" --nnodes 2 --dist-init-addr 127.0.0.1:1 --dp 3
refused "--device must be cpu or cuda" --device tpu
refused "--reasoning-parser 'qwen3' is not supported" --reasoning-parser qwen3
refused "--tool-call-parser 'llama3' is not supported" --tool-call-parser llama3
refused "--schedule-policy 'lof' is not supported" --schedule-policy lof
refused "--kv-cache-dtype fp8_e5m2: not supported; DeepSeek's FP8 KV layout is fp8_e4m3" --kv-cache-dtype fp8_e5m2
refused "--kv-cache-dtype 'int8' is not one of auto, bf16, bfloat16, fp32, float32, fp8_e4m3" --kv-cache-dtype int8
refused "--kv-cache-dtype bf16: the cpu backend has no bf16 KV cache; use auto" --kv-cache-dtype bf16 --encoder dsv32

# The KV plan from memory, capped at max-running-requests x context length.
start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --mem-fraction-static 0.5 \
  --max-running-requests 2 --context-length 100 --page-size 16 --trust-remote-code --enable-dp-attention
grep -q "KV pool: 192 tokens = 12 pages of 16" "$SERVER_LOG" || fail "KV plan: $(grep 'KV pool' "$SERVER_LOG")"
grep -q "capped at max-running-requests 2 x context length 100" "$SERVER_LOG" || fail "KV plan cap"
info=$(curl -s "$BASE_URL/get_server_info")
[ "$(jget "$info" 'j["max_total_tokens"]')" = 192 ] || fail "server info: $info"
[ "$(jget "$info" 'j["port"]')" = "${BASE_URL##*:}" ] || fail "server info port: $info"
stop_server
echo ok
