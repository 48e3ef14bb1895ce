#!/usr/bin/env bash
# DeepSeek-V3.2's depth on CPU ranks: 61 decoder layers (3 dense, 58 MoE) + the MTP layer, at tiny widths (16
# heads, 16 experts, the real vocabulary), served as issue 16 serves the full model on 8 GPUs: --tp 8 --dp 8
# --enable-dp-attention --ep 8, and --tp 8 with MTP speculative decoding. Greedy /generate and chat must be
# identical to one rank. (Multi-rank runs had only seen a few layers; this covers the per-layer indexing, the
# MTP layer's index 61 and every rank's share of 58 MoE layers at that depth.)
# usage: test_deep.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
DEEP="$TMP/deep61"
"$BIN" make-model --preset tiny --num-layers 61 --seed 3 --out "$DEEP" \
  --override '{"vocab_size": 129280, "max_position_embeddings": 4096, "num_attention_heads": 16,
               "n_routed_experts": 16, "first_k_dense_replace": 3}' >/dev/null 2>&1
cp "$TOKDIR/tokenizer.json" "$TOKDIR/tokenizer_config.json" "$DEEP/"
grep -q '"num_hidden_layers": 61' "$DEEP/config.json" || fail "make-model wrote no 61-layer config"
COMMON=(--model-path "$DEEP" --served-model-name m --encoder dsv32 --random-seed 0 --max-running-requests 4
        --context-length 256 --page-size 16 --threads 1)

outputs() {  # greedy /generate of two prompts in one batch (token ids) and a chat reply, one line each
  jget "$(curl -sf "$BASE_URL/generate" -H 'Content-Type: application/json' \
    -d '{"text":["The capital of France is","1, 2, 3, 4,"],"sampling_params":{"temperature":0,"max_new_tokens":16}}')" \
    '[x["output_ids"] for x in j]'
  jget "$(curl -sf "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"Hello there"}],"temperature":0,"max_tokens":12}')" \
    'j["choices"][0]["message"]["content"]'
}

start_server "$TMP/one.log" "${COMMON[@]}"
grep -q "61 layers + MTP" "$TMP/one.log" || fail "the server did not load 61 layers + MTP"
outputs >"$TMP/one.txt"
stop_server
[ "$(wc -l <"$TMP/one.txt")" = 2 ] || fail "one rank's outputs: $(cat "$TMP/one.txt")"
echo "one rank: 61 layers + MTP ($SECONDS s)"

start_server "$TMP/dp8.log" "${COMMON[@]}" --tp 8 --dp 8 --enable-dp-attention --ep 8
grep -q "x 8 ranks (tp 8, dp 8, ep 8, dp attention)" "$TMP/dp8.log" || fail "no 8-rank DP/EP load line"
outputs >"$TMP/dp8.txt"
stop_server
diff "$TMP/one.txt" "$TMP/dp8.txt" >/dev/null || fail "--tp 8 --dp 8 --ep 8: outputs differ: $(diff "$TMP/one.txt" "$TMP/dp8.txt")"
echo "--tp 8 --dp 8 --enable-dp-attention --ep 8: identical to one rank ($SECONDS s)"

start_server "$TMP/tp8.log" "${COMMON[@]}" --tp 8 --speculative-algorithm EAGLE --speculative-num-steps 3
outputs >"$TMP/tp8.txt"
meta=$(curl -sf "$BASE_URL/generate" -H 'Content-Type: application/json' \
  -d '{"text":"Speculate.","sampling_params":{"temperature":0,"max_new_tokens":12,"ignore_eos":true}}')
stop_server
diff "$TMP/one.txt" "$TMP/tp8.txt" >/dev/null || fail "--tp 8 + MTP: outputs differ: $(diff "$TMP/one.txt" "$TMP/tp8.txt")"
[ "$(jget "$meta" 'j["meta_info"]["spec_verify_ct"]')" -gt 0 ] || fail "--tp 8 + MTP did not verify drafts: $meta"
echo "--tp 8 with MTP speculative decoding (3 steps): identical to one rank ($SECONDS s)"
echo ok
