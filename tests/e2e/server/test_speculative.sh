#!/usr/bin/env bash
# `dsserve serve --speculative-algorithm EAGLE` (MTP drafts) end to end on CPU ranks: greedy chat, /generate
# (batched, n > 1), streaming and chat under a JSON schema, a regex and tool_choice required (each valid, and
# speculating) identical to plain decoding on one rank and under --tp 2,
# --tp 2 --dp 2 --enable-dp-attention and --dp 2; the accept length in meta_info, /metrics and
# /get_server_info and bench serving's report; clear errors for what is not supported.
# The model: the e2e model's shapes with a draft that agrees by construction (make-model --bigram-mtp)
# and main layers scaled by 0.2, so that drafts are accepted often but not always. Also over two nodes.
# usage: test_speculative.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
NODE1_PID=""
trap 'cleanup; [ -n "$NODE1_PID" ] && kill -KILL "$NODE1_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
SPEC_MODEL="$TMP/bigram"
"$BIN" make-model --preset tiny --num-layers 2 --seed 3 --bigram-mtp --layer-output-scale 0.2 \
  --override '{"vocab_size": 129280, "max_position_embeddings": 4096}' --out "$SPEC_MODEL" >/dev/null
cp "$TOKDIR/tokenizer.json" "$TOKDIR/tokenizer_config.json" "$SPEC_MODEL/"
COMMON=(--model-path "$SPEC_MODEL" --served-model-name m --encoder dsv32 --random-seed 0 --context-length 512
        --page-size 16 --threads 2 --enable-metrics --tool-call-parser deepseekv32)
# (No pauses: this model's accept length, ~1.7, is near the pause rule's default threshold, and the metric
# checks below want every request speculating; the rule has its own unit test.)
SPEC=(--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1 --speculative-num-draft-tokens 4
      --speculative-min-accept-length 0)
PAUSING=("${SPEC[@]:0:8}" --speculative-min-accept-length 10)  # a bound no window meets: pauses after each

chat() {  # greedy chat completion of PROMPT, N choices
  curl -sf "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"$1\"}],\"temperature\":0,\"max_tokens\":40,\"n\":${2:-1}}"
}
generate() {  # greedy /generate of three prompts in one batch
  curl -sf "$BASE_URL/generate" -H 'Content-Type: application/json' \
    -d '{"text":["The capital of France is","1, 2, 3, 4,","Once upon a time"],"sampling_params":{"temperature":0,"max_new_tokens":37,"ignore_eos":true}}'
}
constrained() {  # greedy chat under a constraint: EXTRA-JSON-FIELDS
  curl -sf "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a person\"}],\"temperature\":0,\"max_tokens\":60,$1}"
}
SCHEMA='{"type":"object","properties":{"name":{"type":"string","maxLength":10},"age":{"type":"integer","minimum":0,"maximum":150}},"required":["name","age"],"additionalProperties":false}'
REGEX='([a-z]{1,6} ){1,5}(yes|no)[.]'
TOOLS='[{"type":"function","function":{"name":"set_alarm","parameters":{"type":"object","properties":{"hour":{"type":"integer","minimum":0,"maximum":23},"label":{"type":"string","maxLength":6}},"required":["hour"],"additionalProperties":false}}}]'
grammar_outputs() {  # greedy outputs under a JSON schema, a regex and tool_choice required (each line: a choice)
  jget "$(constrained "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":$SCHEMA}}")" \
    '[j["choices"][0]["finish_reason"], j["choices"][0]["message"]["content"]]'
  jget "$(constrained "\"regex\":\"$REGEX\"")" '[j["choices"][0]["finish_reason"], j["choices"][0]["message"]["content"]]'
  jget "$(constrained "\"tools\":$TOOLS,\"tool_choice\":\"required\"")" \
    '[j["choices"][0]["finish_reason"], [[c["function"]["name"], c["function"]["arguments"]] for c in j["choices"][0]["message"].get("tool_calls") or []]]'
}
outputs() {  # everything greedy this server answers, one line each
  jget "$(chat 'Tell me about speculative decoding.')" 'j["choices"][0]["message"]["content"]'
  grammar_outputs
  jget "$(chat 'Count to ten.' 2)" '[c["message"]["content"] for c in j["choices"]]'
  jget "$(generate)" '[x["text"] for x in j]'
  curl -sN "$BASE_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":30,"temperature":0}' |
    sse_chat_text
}

start_server "$TMP/plain.log" "${COMMON[@]}"
outputs >"$TMP/plain.txt"
stop_server

start_server "$TMP/spec.log" "${COMMON[@]}" "${SPEC[@]}"
grep -q "speculative decoding: 3 drafts per step" "$SERVER_LOG" || fail "no speculative decoding line in the log"
grep -q "max running requests 48" "$SERVER_LOG" || fail "max running requests should default to 48 with MTP"
outputs >"$TMP/spec.txt"
diff "$TMP/plain.txt" "$TMP/spec.txt" >/dev/null || fail "speculative outputs differ: $(diff "$TMP/plain.txt" "$TMP/spec.txt")"
# Under the grammars: each output valid, and the requests speculated (the regex one over /generate, for meta_info).
python3 - "$TMP/spec.txt" "$SCHEMA" "$REGEX" <<'PY' || fail "grammar outputs under speculation: $(sed -n 2,4p "$TMP/spec.txt")"
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
schema, regex = json.loads(sys.argv[2]), sys.argv[3]
(r1, doc), (r2, text), (r3, calls) = (json.loads(l) for l in lines[1:4])
assert r1 in ("stop", "length") and r2 in ("stop", "length") and r3 in ("tool_calls", "length"), (r1, r2, r3)
assert r3 == "length" or calls, "tool_choice required: no call"
if r1 == "stop":
    d = json.loads(doc)
    assert set(d) == {"name", "age"} and isinstance(d["name"], str) and len(d["name"]) <= 10 and 0 <= d["age"] <= 150, doc
if r2 == "stop":
    assert re.fullmatch(regex, text), text
if r3 == "tool_calls":
    for name, args in calls:  # (the call ids are random: left out of the comparison)
        a = json.loads(args)
        assert name == "set_alarm" and 0 <= a["hour"] <= 23, (name, args)
print("grammar outputs under speculation:", r1, r2, r3)
PY
gen=$(curl -sf "$BASE_URL/generate" -H 'Content-Type: application/json' \
  -d "{\"text\":\"a word\",\"sampling_params\":{\"temperature\":0,\"max_new_tokens\":40,\"regex\":\"$REGEX\"}}")
python3 -c 'import json,sys; m=json.loads(sys.argv[1])["meta_info"]; assert m["spec_verify_ct"] > 0, m' "$gen" ||
  fail "a grammar request did not speculate: $gen"
gen=$(generate)
python3 - "$gen" <<'PY' || fail "meta_info: $gen"
import json, sys
for x in json.loads(sys.argv[1]):
    m = x["meta_info"]
    assert m["spec_verify_ct"] > 0 and m["spec_verify_ct"] < m["completion_tokens"], m
    assert 1.0 < m["spec_accept_length"] <= 4.0, m
    assert 0 < m["spec_accept_token_num"] <= m["spec_draft_token_num"], m
PY
metrics=$(curl -sf "$BASE_URL/metrics")
accept=$(sed -n 's/^sglang:spec_accept_length{[^}]*} //p' <<<"$metrics")
python3 -c "import sys; assert float(sys.argv[1]) > 1.2, sys.argv[1]" "$accept" || fail "/metrics accept length: '$accept'"
grep -q '^dsserve:spec_pauses_total{[^}]*} 0$' <<<"$metrics" || fail "/metrics: no spec_pauses_total 0"
# Per draft position: 3 positions, each accepted at most as often as drafted, later ones no more than earlier
# ones (draft j + 1 counts only after draft j was accepted), and the sum equals the accepted total.
python3 - "$metrics" <<'PY' || fail "/metrics: per-position acceptance"
import re, sys
m = sys.argv[1]
get = lambda name: [int(v) for _, v in sorted(re.findall(name + r'\{[^}]*position="(\d+)"\} (\d+)', m))]
drafted, accepted = get("dsserve:spec_drafted_by_position_total"), get("dsserve:spec_accepted_by_position_total")
total = int(re.search(r'dsserve:spec_accepted_tokens_total\{[^}]*\} (\d+)', m).group(1))
assert len(drafted) == len(accepted) == 3, (drafted, accepted)
assert all(0 <= a <= d for a, d in zip(accepted, drafted)), (drafted, accepted)
assert accepted[0] >= accepted[1] >= accepted[2] and accepted[0] > 0, accepted
assert sum(accepted) == total, (accepted, total)
PY
info=$(curl -sf "$BASE_URL/get_server_info")
[ "$(jget "$info" 'j["speculative_algorithm"]')" = EAGLE ] || fail "server info: no speculative_algorithm"
python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['internal_states'][0]['avg_spec_accept_length'] > 1.2, j" "$info" ||
  fail "server info: avg_spec_accept_length"
grep -q "accept length" "$SERVER_LOG" || fail "no accept length in the request log lines"
bench=$("$BIN" bench serving --base-url "$BASE_URL" --dataset-name random --random-input-len 32 --random-output-len 24 \
  --num-prompts 8 --max-concurrency 4 2>&1)
grep -q "Accept length:" <<<"$bench" || fail "bench serving reports no accept length: $bench"
stop_server
echo "one rank: outputs identical to plain decoding; accept length $accept"

# The last layout pauses after its first window: paused steps still fill the MTP layer's KV, in lock-step with
# DP attention's idle exchanges.
# "padded": every decode and verify step in the layout the GPU replays (DSSERVE_PADDED_EAGER=1: padded op by op
# on the CPU), DP attention's verify steps included: every group pads its sequences to the verify rows and to
# the largest group's batch bucket whenever one group verifies.
for layout in "--tp 2" "--tp 2 --dp 2 --enable-dp-attention" "--dp 2" "pausing --tp 2 --dp 2 --enable-dp-attention" \
  "padded --tp 2 --dp 2 --enable-dp-attention"; do
  spec=("${SPEC[@]}")
  [[ $layout != pausing* ]] || spec=("${PAUSING[@]}")
  padded=0
  [[ $layout != padded* ]] || padded=1
  args=${layout#pausing }
  # shellcheck disable=SC2086
  DSSERVE_PADDED_EAGER=$padded start_server "$TMP/par.log" "${COMMON[@]}" "${spec[@]}" ${args#padded }
  [ "$padded" = 0 ] || grep -q "run in the recorded steps' padded layout" "$TMP/par.log" || fail "$layout: not padded"
  outputs >"$TMP/par.txt"
  diff "$TMP/plain.txt" "$TMP/par.txt" >/dev/null ||
    fail "$layout: speculative outputs differ from one plain rank: $(diff "$TMP/plain.txt" "$TMP/par.txt")"
  [[ $layout != pausing* ]] || grep -q "speculative decoding paused" "$TMP/par.log" || fail "$layout: never paused"
  [[ $layout != padded* ]] || grep -q "a verify step ran padded under DP attention" "$TMP/par.log" ||
    fail "$layout: no verify step ran padded"
  [[ $layout != padded* ]] || grep -q "a draft step ran padded under DP attention" "$TMP/par.log" ||
    fail "$layout: no draft step ran padded"
  # The padded draft steps draft what op by op drafts (up to near-tied greedy picks): the same acceptance.
  acc=$(curl -s "$BASE_URL/metrics" | sed -n 's/^sglang:spec_accept_length{[^}]*} //p')
  [ "$layout" != "--tp 2 --dp 2 --enable-dp-attention" ] || dp_accept=$acc
  [[ $layout != padded* ]] || python3 -c "import sys; a, b = map(float, sys.argv[1:]); assert a >= 0.9 * b and a > 1.2, (a, b)" \
    "$acc" "$dp_accept" || fail "$layout: accept length $acc, op by op $dp_accept"
  stop_server
  echo "$layout: speculative outputs identical to one plain rank; accept length $acc"
done

# Two nodes (two processes on this machine, Gloo between their CPU ranks): the step wire carries both phases.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
NODES=(--tp 2 --nnodes 2 --dist-init-addr "127.0.0.1:$(free_port)")
"$BIN" serve "${COMMON[@]}" "${SPEC[@]}" "${NODES[@]}" --node-rank 1 >"$TMP/node1.log" 2>&1 &
NODE1_PID=$!
start_server "$TMP/node0.log" "${COMMON[@]}" "${SPEC[@]}" "${NODES[@]}" --node-rank 0
outputs >"$TMP/mn.txt"
diff "$TMP/plain.txt" "$TMP/mn.txt" >/dev/null ||
  fail "--tp 2 over 2 nodes: speculative outputs differ: $(diff "$TMP/plain.txt" "$TMP/mn.txt")"
stop_server
wait "$NODE1_PID" || fail "node 1 exited $? when node 0 stopped: $(tail -3 "$TMP/node1.log")"
NODE1_PID=""
echo "--tp 2 over 2 nodes: speculative outputs identical to one plain rank"

# What is not supported gets a clear error, before loading anything big.
expect_error() {  # MESSAGE-FRAGMENT ARGS...
  local want=$1
  shift
  local out rc=0
  out=$("$BIN" serve --port 0 "$@" 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "serve $* should fail"
  grep -q -- "$want" <<<"$out" || fail "serve $*: expected '$want' in: $out"
}
expect_error "only 1 is supported" "${COMMON[@]}" --speculative-algorithm EAGLE --speculative-eagle-topk 4
expect_error "must be --speculative-num-steps + 1" "${COMMON[@]}" --speculative-algorithm EAGLE --speculative-num-steps 2 \
  --speculative-num-draft-tokens 8
expect_error "EAGLE or NEXTN" "${COMMON[@]}" --speculative-algorithm MEDUSA
expect_error "need --speculative-algorithm" "${COMMON[@]}" --speculative-num-steps 2
expect_error "need --speculative-algorithm" "${COMMON[@]}" --speculative-draft-head fp8
expect_error "speculative-draft-head" "${COMMON[@]}" --speculative-algorithm EAGLE --speculative-draft-head bf16
NO_MTP="$TMP/no_mtp"
"$BIN" make-model --preset tiny --num-layers 1 --override '{"vocab_size": 129280, "num_nextn_predict_layers": 0}' \
  --out "$NO_MTP" >/dev/null
cp "$TOKDIR/tokenizer.json" "$TOKDIR/tokenizer_config.json" "$NO_MTP/"
expect_error "has no MTP layer" --model-path "$NO_MTP" --threads 2 --speculative-algorithm NEXTN
echo ok
