#!/usr/bin/env bash
# On the GPU machine (device tool; scripts/device-prepare.sh here first, .device-carry carried): issue 20's
# speed goal — "mask computation never lengthens a decode step by more than 5% at batch 64". One server on
# the demo-size model (CUDA graphs on: the shortest decode step, so the masks' share is the largest), `bench
# serving` over the chat API at concurrency 1 and 64, the same random prompts each time:
#   plain    no constraint;
#   schema   response_format json_schema {"text": string}: the random model fills the string to max_tokens,
#            so both runs decode about as many tokens, every one of them under a mask;
#   jump     a fixed-key schema with --constrained-json-disable-any-whitespace (jump-forward on): how much of
#            the output the grammar forces. Its requests end where the schema completes (a terminated grammar
#            ends the request under ignore_eos too), so bench's TPOT for it counts the requested tokens: only
#            the jump-forward counts and the step phases are meaningful there.
# TPOT and output tok/s of each, the ratio schema/plain, and the engine step's time by phase (/metrics
# dsserve:step_phase_seconds_total: where a slower step spends it). Logs in $OUT (or /tmp/gpu-grammar).
# GG_MODEL=full-width-N: the full-width layer shapes (N layers, random weights made on the device) instead
# of the demo model. GG_SERVE_ARGS: flags every server gets (e.g. --grammar-ahead-min-requests 0); GG_ONLY_SCHEMA=1: only the
# plain/schema pairs. GG_DEVICE=cpu GG_BIN=build/dsserve: a dry run on a machine without a GPU (smaller load: GG_CONC, GG_OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-grammar}
mkdir -p "$LOG"
DEVICE=${GG_DEVICE:-cuda}
if [ -z "${GG_BIN:-}" ]; then
  source scripts/device-env.sh
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
fi
BIN=${GG_BIN:-$PWD/build-gpu/dsserve}
TOKENIZER_DIR=${GG_TOKENIZER_DIR:-.device-carry}
source scripts/gpu-serve-lib.sh  # make_ckpt, wait_ready
TMP=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -KILL $PID 2>/dev/null; rm -rf "$TMP"' EXIT
status=0

M=$TMP/model
LOAD=()
if [[ ${GG_MODEL:-demo} == full-width-* ]]; then
  # GG_MODEL=full-width-N: DeepSeek-V3.2's layer shapes, N layers, random weights made on the device at start
  # (--load-format dummy: no checkpoint written) — a decode step of real size, where the masks' share is
  # what a user would see.
  make_ckpt "$M" --preset full-width --num-layers "${GG_MODEL#full-width-}" --config-only
  LOAD=(--load-format dummy)
else
  make_ckpt "$M" --preset demo --seed 0
fi

serve() {  # LOG ARGS...: sets URL and PID
  # shellcheck disable=SC2086  # GG_SERVE_ARGS: extra server flags for an A/B (word-split on purpose)
  "$BIN" serve --port 0 --device "$DEVICE" --random-seed 0 --model-path "$M" "${LOAD[@]}" --enable-metrics ${GG_SERVE_ARGS:-} "${@:2}" >"$1" 2>&1 &
  PID=$!
  wait_ready "$1" "$PID"
}
stop() { kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }
jump_total() { curl -sf "$URL/metrics" | awk '/^dsserve:jump_forward_tokens_total/ {print $2}'; }

OUTLEN=${GG_OUT:-256}
FREE='{"response_format":{"type":"json_schema","json_schema":{"name":"t","schema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}}}}'
FIXED='{"response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"customer_name":{"type":"string","maxLength":12},"is_active_member":{"type":"boolean"},"membership_tier":{"enum":["gold","silver","bronze"]},"favourite_colour":{"type":"string","maxLength":12}},"required":["customer_name","is_active_member","membership_tier","favourite_colour"],"additionalProperties":false}}}}'
# Engine steps and their time by phase (/metrics), one line: steps plan forward grammar_masks draw output drafts.
phases() {
  curl -sf "$URL/metrics" | awk '/^dsserve:engine_steps_total/ {s = $2}
    /^dsserve:step_phase_seconds_total/ {match($0, /phase="[a-z_]+"/); p[substr($0, RSTART + 7, RLENGTH - 8)] = $2}
    END {print s, p["plan"], p["forward"], p["grammar_masks"], p["draw"], p["output"], p["drafts"]}'
}
bench() {  # TAG CONCURRENCY [EXTRA_BODY]
  local n=$(($2 * 3 + 2)) extra=() before
  [ -n "${3:-}" ] && extra=(--extra-request-body "$3")
  before=$(phases)
  timeout 200 "$BIN" bench serving --base-url "$URL" --backend sglang-oai-chat --dataset-name random \
    --random-input-len 128 --random-output-len "$OUTLEN" --random-range-ratio 1 --num-prompts "$n" \
    --max-concurrency "$2" --tokenizer "$M" --seed 1 --output-file "$TMP/bench.jsonl" "${extra[@]}" \
    >"$LOG/bench-$1-c$2.txt" 2>&1 || status=1
  local tpot tps toks
  tpot=$(sed -n 's/^Mean TPOT (ms): *//p' "$LOG/bench-$1-c$2.txt")
  tps=$(sed -n 's/^Output token throughput (tok\/s): *//p' "$LOG/bench-$1-c$2.txt")
  toks=$(sed -n 's/^Total generated tokens: *//p' "$LOG/bench-$1-c$2.txt")
  echo "$1 $2 $n ${toks:-?} ${tpot:-?} ${tps:-?}" >>"$LOG/grammar.txt"
  python3 - "$1 $2" "$before" "$(phases)" >>"$LOG/phases.txt" <<'PY'
import sys
a, b = [list(map(float, x.split())) for x in sys.argv[2:4]]
steps = b[0] - a[0]
ms = [(y - x) * 1e3 / max(steps, 1) for x, y in zip(a[1:], b[1:])]
print(f"{sys.argv[1]:>10} {int(steps):>6} " + " ".join(f"{v:8.3f}" for v in ms) + f" {sum(ms):8.3f}")
PY
}
echo "setup concurrency prompts out_tokens TPOT_ms out_tok_s" >"$LOG/grammar.txt"
echo "per engine step, ms:  steps     plan  forward    masks     draw   output   drafts    total" >"$LOG/phases.txt"
if serve "$LOG/serve.log"; then
  for c in ${GG_CONC:-1 64}; do
    bench plain "$c"
    bench schema "$c" "$FREE"
  done
  stop
else status=1; fi
# The same load with the host's OpenMP threads sleeping when idle (libgomp spins them by default after each
# parallel region; the masks' loop was one until it moved to util/worker_pool.h): a control that no
# spinning threads are left on a CUDA server's step path.
last=$(echo ${GG_CONC:-1 64} | awk '{print $NF}')
if [ -n "${GG_ONLY_SCHEMA:-}" ]; then :  # GG_ONLY_SCHEMA=1: the plain/schema pairs only (an A/B of server flags)
elif OMP_WAIT_POLICY=passive serve "$LOG/serve-passive.log"; then
  bench plain-passive "$last"
  bench schema-passive "$last" "$FREE"
  stop
else status=1; fi
if [ -n "${GG_ONLY_SCHEMA:-}" ]; then :
elif serve "$LOG/serve-fixed.log" --constrained-json-disable-any-whitespace; then
  for c in ${GG_CONC:-1 64}; do
    before=$(jump_total)
    bench jump "$c" "$FIXED"
    echo "jump-forward tokens at concurrency $c: $(( $(jump_total) - ${before:-0} ))" >>"$LOG/grammar.txt"
  done
  stop
else status=1; fi
cat "$LOG/grammar.txt" "$LOG/phases.txt"
python3 - "$LOG/grammar.txt" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    f = line.split()
    if len(f) == 6 and f[1].isdigit() and f[4] != "?":
        rows[(f[0], f[1])] = float(f[4])
for (tag, c), tpot in rows.items():
    base = tag.replace("schema", "plain")
    if tag.startswith("schema") and (base, c) in rows:
        r = tpot / rows[(base, c)]
        print(f"concurrency {c}: TPOT under the schema {tpot:.2f} ms vs plain {rows[(base, c)]:.2f} ms = {r:.3f}x "
              f"({'within' if r <= 1.05 else 'OVER'} the 5% goal){' (OMP_WAIT_POLICY=passive)' if 'passive' in tag else ''}")
PY
grep -h "CUDA graphs\|KV pool" "$LOG/serve.log" | head -2
exit $status
