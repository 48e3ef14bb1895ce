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
refused "--indexer 'fp16' is not one of auto, fp32, fp8" --indexer fp16

# The KV plan from memory, capped at max-running-requests x context length.
start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --mem-fraction-static 0.5 \
  --max-running-requests 2 --context-length 100 --page-size 16 --trust-remote-code --enable-dp-attention
grep -q "KV pool: 192 tokens = 12 pages of 16" "$SERVER_LOG" || fail "KV plan: $(grep 'KV pool' "$SERVER_LOG")"
grep -q "capped at max-running-requests 2 x context length 100" "$SERVER_LOG" || fail "KV plan cap"
info=$(curl -s "$BASE_URL/get_server_info")
[ "$(jget "$info" 'j["max_total_tokens"]')" = 192 ] || fail "server info: $info"
[ "$(jget "$info" 'j["port"]')" = "${BASE_URL##*:}" ] || fail "server info port: $info"
stop_server

# DeepSeek's FP8 indexer numerics: served, reported, and the same greedy text as the fp32 indexer while every
# position is below index_topk (16 here: 6 prompt + 8 new tokens; the indexer then selects every key, so its
# numerics cannot matter); a longer continuation (past index_topk, where they do) is served too.
gen() { curl -sf "$BASE_URL/generate" -H 'Content-Type: application/json' \
  -d "{\"text\":\"The capital of France is\",\"sampling_params\":{\"temperature\":0,\"max_new_tokens\":${1:-8},\"ignore_eos\":true}}"; }
start_server "$TMP/server-fp8.log" --model-path "$MODEL" --encoder dsv32 --indexer fp8
[ "$(jget "$(curl -s "$BASE_URL/get_server_info")" 'j["indexer"]')" = fp8 ] || fail "server info: indexer"
fp8_out=$(gen) || fail "generate with --indexer fp8"
long=$(gen 48) || fail "a 48-token continuation with --indexer fp8"
[ "$(jget "$long" 'j["meta_info"]["completion_tokens"]')" = 48 ] || fail "--indexer fp8, 48 tokens: $long"
stop_server
# The default (auto) on the CPU is the fp32 indexer, and /get_server_info says which it resolved to.
start_server "$TMP/server-fp32.log" --model-path "$MODEL" --encoder dsv32
[ "$(jget "$(curl -s "$BASE_URL/get_server_info")" 'j["indexer"]')" = fp32 ] || fail "server info: auto on the cpu"
fp32_out=$(gen) || fail "generate with the fp32 indexer"
stop_server
[ "$(jget "$fp8_out" 'j["text"]')" = "$(jget "$fp32_out" 'j["text"]')" ] || fail "short prompt: fp8 vs fp32 indexer differ"
echo ok
