#!/usr/bin/env bash
# `dsserve bench model` on the CPU backend, a couple of steps: on the tiny preset (random weights made
# in memory, with the extrapolation and the profile) and on the tiny golden checkpoint. Every figure
# must be sane -- finite, positive, consistent with the others and with the model -- or this fails.
# usage: test_cli_bench_model.sh DSSERVE SOURCE_DIR
set -euo pipefail
BIN=$1 SRC=$2
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
common=(--device cpu --threads 2 --steps 2 --log-level error)
# tiny: 3 layers (1 dense + 2 MoE), 8 experts top-3, index_topk 16: a context of 40 really selects.
"$BIN" bench model --preset tiny "${common[@]}" --batch 1,3 --context 40 --warmup 1 --prefill 48 --chunk 32 \
  --extrapolate-to 61 --profile --csv "$out/a.csv" >"$out/a.txt"
"$BIN" bench model --model-path "$SRC/tests/golden/tiny_v32_fp8" "${common[@]}" --batch 2 --context 20 --warmup 0 \
  --prefill 20 --chunk 64 --csv "$out/b.csv" >"$out/b.txt"

check() {  # CSV EXPECTED_ROWS AWK_CONDITIONS_PER_ROW
  awk -F, -v want="$2" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    function v(name) { return $(col[name]) + 0 }
    function bad(msg) { printf "%s line %d: %s\n  %s\n", FILENAME, NR, msg, $0; failed = 1 }
    {
      rows[$1 ":" $2 ":" $3 ":" $4] = $0; n[$1]++
      for (i = 2; i <= NF; i++) if ($i !~ /^-?[0-9.]+$/) bad("not a finite number: " $i)
      if ($1 == "decode" || $1 == "prefill") {
        if (v("ms") <= 0 || v("ms") > 60000) bad("time out of range")
        if (v("tok_s") <= 0) bad("tok/s <= 0")
        tok = $1 == "decode" ? v("batch") : v("context")
        if (abs(v("tok_s") * v("ms") / 1000 / tok - 1) > 0.01) bad("tok/s does not match the time")
      }
      if ($1 == "decode") {
        if (v("enqueue_ms") <= 0 || v("enqueue_ms") > v("ms") + 0.01) bad("enqueue time outside (0, step]")
        if (v("launch_ms") <= 0 || v("launch_ms") + v("moe_host_ms") > v("enqueue_ms") + 0.01) bad("host times do not add up")
        if (v("read_gb") <= 0 || v("roofline_ms") <= 0) bad("no bytes counted")
        if (abs(v("ratio") * v("roofline_ms") / v("ms") - 1) > 0.01) bad("ratio != step / roofline")
      }
      if ($1 == "prefill" && v("tflop") <= 0) bad("no FLOPs counted")
    }
    function abs(x) { return x < 0 ? -x : x }
    END {
      split(want, w, " ")
      for (k in w) { split(w[k], kv, "="); if (n[kv[1]] != kv[2]) { printf "%s: %d %s rows, expected %d\n", FILENAME, n[kv[1]], kv[1], kv[2]; failed = 1 } }
      exit failed
    }' "$1"
}
check "$out/a.csv" "decode=4 prefill=2 decode-extrapolated=2 prefill-extrapolated=1"
check "$out/b.csv" "decode=1 prefill=1"

field() {  # CSV KIND LAYERS BATCH COLUMN
  awk -F, -v k="$2" -v l="$3" -v b="$4" -v c="$5" \
    'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } $1 == k && $2 == l && $3 == b { print $(col[c]) }' "$1"
}
fail() { echo "FAIL: $*"; cat "$out/a.txt" "$out/b.txt"; exit 1; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
# One token routes to exactly top-k distinct experts; three tokens to between 3 and all 8.
[ "$(field "$out/a.csv" decode 3 1 experts)" = "3.00" ] || fail "batch 1 should touch 3 experts per MoE layer"
e3=$(field "$out/a.csv" decode 3 3 experts)
gt "$e3" 2.99 && gt 8.01 "$e3" || fail "batch 3 touched $e3 experts per MoE layer"
# More tokens read more (experts, KV); the cut model (2 layers) reads less than the full one, and the
# 61-layer extrapolation more: these bytes are counted, not timed, so they are exact.
gt "$(field "$out/a.csv" decode 3 3 read_gb)" "$(field "$out/a.csv" decode 3 1 read_gb)" || fail "batch 3 read <= batch 1"
gt "$(field "$out/a.csv" decode 3 1 read_gb)" "$(field "$out/a.csv" decode 2 1 read_gb)" || fail "3 layers read <= 2"
gt "$(field "$out/a.csv" decode-extrapolated 61 1 read_gb)" "$(field "$out/a.csv" decode 3 1 read_gb)" ||
  fail "61 layers read <= 3"
gt "$(field "$out/a.csv" prefill 3 1 tflop)" "$(field "$out/a.csv" prefill 2 1 tflop)" || fail "3 layers FLOPs <= 2"
grep -q "^Profile: decode, batch 1, 3 layers" "$out/a.txt" || fail "no decode profile"
grep -q "^Profile: prefill 48 tokens" "$out/a.txt" && fail "48 tokens are two chunks: no prefill profile expected"
grep -q "^Extrapolated to 61 layers (NOT measured" "$out/a.txt" || fail "extrapolation not labelled"
grep -q "preset tiny, random weights" "$out/a.txt" || fail "weights source not named"
# --tp 2 (CPU ranks, expert parallel too): a line per rank per batch with a positive step time, bytes and
# collective time; a layout the model cannot be cut into is refused naming the constraint.
"$BIN" bench model --model-path "$SRC/tests/golden/tiny_v32_fp8" "${common[@]}" --tp 2 --ep 2 --batch 1,2 \
  --context 20 --warmup 1 --prefill 20 --chunk 64 >"$out/tp.txt"
[ "$(grep -cE '^  rank [01]: [0-9.]+ ms, [0-9.]+ GB, [0-9.]+x, collectives [0-9.]+ ms' "$out/tp.txt")" = 4 ] ||
  fail "bench model --tp 2: expected 2 ranks x 2 batches: $(cat "$out/tp.txt")"
awk '/^  rank/ { if ($3 + 0 <= 0) exit 1 }' "$out/tp.txt" || fail "a rank's step time is not positive"
grep -q "over 2 ranks (tensor + expert parallel)" "$out/tp.txt" || fail "layout not named"
grep -qE "^ +20 tokens: [0-9.]+ s" "$out/tp.txt" || fail "no prefill line with --tp 2"
# --tp 4 --dp 2 (DP attention: two groups of two ranks, the MoE exchanged over all four): every rank's
# line, both groups' tokens counted.
"$BIN" bench model --model-path "$SRC/tests/golden/tiny_v32_fp8" "${common[@]}" --tp 4 --dp 2 --batch 2 \
  --context 20 --warmup 1 --prefill '' >"$out/dp.txt"
[ "$(grep -cE '^  rank [0-3]: [0-9.]+ ms, [0-9.]+ GB, [0-9.]+x, collectives [0-9.]+ ms' "$out/dp.txt")" = 4 ] ||
  fail "bench model --tp 4 --dp 2: expected 4 ranks: $(cat "$out/dp.txt")"
grep -q "DP attention x 2" "$out/dp.txt" && grep -q "per DP group (4 in all)" "$out/dp.txt" ||
  fail "bench model --dp: layout or token count not named: $(cat "$out/dp.txt")"
if msg=$("$BIN" bench model --model-path "$SRC/tests/golden/tiny_v32_fp8" "${common[@]}" --tp 3 --batch 1 --prefill '' 2>&1); then
  fail "--tp 3 of 4 heads accepted"
fi
[[ $msg == *"attention heads"* ]] || fail "--tp 3: no reason given: $msg"
# A bad flag fails cleanly.
if "$BIN" bench model --preset tiny --device cpu --batch 0 >/dev/null 2>&1; then fail "--batch 0 accepted"; fi
echo "ok"
