#!/usr/bin/env bash
# Jump-forward decoding end to end on the e2e model (random weights: the grammar forces most bytes), with
# --constrained-json-disable-any-whitespace (fixed keys are forced text), against the same server with
# --disable-regex-jump-forward: a fully forced output has the same text (streamed too); outputs under a
# fixed-key schema validate, report jump_forward_tokens in meta_info and /metrics, and take fewer engine
# steps; max_tokens inside a forced run ends with "length" at that token. Prints the steps and wall time of
# both servers for JF_REQUESTS (default 8) greedy requests under the schema (docs/PERF.md).
# usage: test_jump_forward.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
command -v curl >/dev/null || skip "curl missing"
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
N=${JF_REQUESTS:-8}

SCHEMA='{"type":"object","properties":{"customer_name":{"type":"string","maxLength":8},"is_active_member":{"type":"boolean"},
 "membership_tier":{"enum":["gold","silver"]},"favourite_colour":{"type":"string","maxLength":8}},
 "required":["customer_name","is_active_member","membership_tier","favourite_colour"],"additionalProperties":false}'
# The regex as a JSON string.
FORCED=$(python3 -c 'import json; print(json.dumps(r"""\{"name": "Ada", "tags": \["ab", "xyz"\]\}"""))')

post() {  # PATH BODY -> body on stdout, fails unless 200
  local code
  code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$2" "$BASE_URL$1")
  [ "$code" = 200 ] || fail "POST $1: status $code: $(cat "$TMP/body")"
  cat "$TMP/body"
}
metric() { curl -sf "$BASE_URL/metrics" | sed -n "s/^$1{[^}]*} //p"; }
chat_forced() {  # STREAM(true|false)
  post /v1/chat/completions "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": 0,
    \"max_tokens\": 60, \"stream\": $1, \"regex\": $FORCED}"
}
# run ARM: everything this server answers -> $TMP/ARM.*; the schema requests' steps and seconds in ARM.perf
run() {
  local arm=$1
  jget "$(chat_forced false)" '[j["choices"][0]["finish_reason"], j["choices"][0]["message"]["content"]]' >"$TMP/$arm.forced"
  chat_forced true | sse_chat_text >"$TMP/$arm.stream"
  post /generate "{\"text\": \"x\", \"sampling_params\": {\"temperature\": 0, \"max_new_tokens\": 60, \"regex\": $FORCED}}" \
    >"$TMP/$arm.full"
  post /generate "{\"text\": \"x\", \"sampling_params\": {\"temperature\": 0, \"max_new_tokens\": 3, \"regex\": $FORCED}}" \
    >"$TMP/$arm.short"
  local steps0 t0 t1
  steps0=$(metric dsserve:engine_steps_total)
  t0=$(date +%s.%N)
  local texts=()
  for i in $(seq 1 "$N"); do texts+=("\"a customer, number $i\""); done
  post /generate "{\"text\": [$(IFS=,; echo "${texts[*]}")], \"sampling_params\": {\"temperature\": 0, \"max_new_tokens\": 200,
    \"json_schema\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$SCHEMA")}}" >"$TMP/$arm.schema"
  t1=$(date +%s.%N)
  echo "$(($(metric dsserve:engine_steps_total) - steps0)) $(python3 -c "print(round($t1 - $t0, 2))") $(metric dsserve:jump_forward_tokens_total)" \
    >"$TMP/$arm.perf"
}

COMMON=(--model-path "$MODEL" --served-model-name m --encoder dsv32 --page-size 16 --max-total-tokens 16384 --threads 2
        --enable-metrics --constrained-json-disable-any-whitespace --random-seed 0)
start_server "$TMP/jf.log" "${COMMON[@]}"
run jf
stop_server
start_server "$TMP/plain.log" "${COMMON[@]}" --disable-regex-jump-forward
run plain
stop_server

# A fully forced output: the same text (the token split may differ: plain decoding takes the model's
# choice among the splits the mask allows), streamed as it is answered.
[ "$(cat "$TMP/jf.forced")" = "$(cat "$TMP/plain.forced")" ] || fail "forced text differs: $(cat "$TMP/jf.forced") vs $(cat "$TMP/plain.forced")"
grep -q 'Ada' "$TMP/jf.forced" || fail "forced output: $(cat "$TMP/jf.forced")"
python3 - "$TMP/jf.forced" "$TMP/jf.stream" <<'PY' || fail "streamed forced text: $(cat "$TMP/jf.stream")"
import ast, json, sys
reason, content = json.loads(open(sys.argv[1]).read())
assert reason == "stop" and ast.literal_eval(open(sys.argv[2]).read().strip()) == content, (reason, content)
PY
# max_tokens inside the forced run: "length" at the third token, which is the full run's third.
python3 - "$TMP/jf.full" "$TMP/jf.short" <<'PY' || fail "max_tokens inside a forced run: $(cat "$TMP/jf.short")"
import json, sys
full, short = (json.load(open(p)) for p in sys.argv[1:])
m = short["meta_info"]
assert m["finish_reason"]["type"] == "length" and m["completion_tokens"] == 3, m
assert short["output_ids"] == full["output_ids"][:3], (short["output_ids"], full["output_ids"])
assert m["jump_forward_tokens"] == 3 and full["meta_info"]["jump_forward_tokens"] == full["meta_info"]["completion_tokens"], m
PY
# The fixed-key schema: every output validates; jump-forward reports its tokens and takes fewer steps.
python3 - "$TMP/jf.schema" "$TMP/plain.schema" "$TMP/jf.perf" "$TMP/plain.perf" <<'PY' || fail "schema outputs"
import json, sys
jf, plain = (json.load(open(p)) for p in sys.argv[1:3])
(jf_steps, jf_s, jf_total), (pl_steps, pl_s, pl_total) = (open(p).read().split() for p in sys.argv[3:5])
for arm, outs in (("jf", jf), ("plain", plain)):
    for o in outs:
        m = o["meta_info"]
        if m["finish_reason"]["type"] != "stop":
            continue
        d = json.loads(o["text"])
        assert list(d) == ["customer_name", "is_active_member", "membership_tier", "favourite_colour"], (arm, o["text"])
        assert isinstance(d["is_active_member"], bool) and d["membership_tier"] in ("gold", "silver"), (arm, o["text"])
        assert (m.get("jump_forward_tokens", 0) > 0) == (arm == "jf"), (arm, m)
assert sum(o["meta_info"]["finish_reason"]["type"] == "stop" for o in jf) >= 1, "no jump-forward output finished"
assert int(jf_total) > 0 and int(pl_total) == 0, (jf_total, pl_total)
assert int(jf_steps) < int(pl_steps), (jf_steps, pl_steps)
tokens = lambda outs: sum(o["meta_info"]["completion_tokens"] for o in outs)
forced = sum(o["meta_info"].get("jump_forward_tokens", 0) for o in jf)
print(f"{len(jf)} requests under the fixed-key schema: jump-forward {jf_steps} steps, {jf_s} s, {tokens(jf)} tokens "
      f"({forced} forced); without {pl_steps} steps, {pl_s} s, {tokens(plain)} tokens")
PY
echo "jump-forward e2e: ok"
