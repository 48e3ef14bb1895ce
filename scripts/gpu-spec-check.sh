#!/usr/bin/env bash
# On the GPU machine (device tool; .device-carry carried, see scripts/device-prepare.sh): speculative decoding
# (MTP drafts) checked and measured on the GPU.
#   1. correctness: a tiny bigram-draft model served on CUDA with and without --speculative-algorithm EAGLE,
#      CUDA graphs on (verify steps recorded): greedy /generate outputs compared, exact GEMM mode (must be
#      identical) and fast mode (agreement reported);
#   2. serving: bench serving at concurrency 1, 8, 32 on a demo-size model whose draft agrees by construction
#      (accept length ~ S + 1) and on the same shapes with a random draft (~1), S = 1, 2, 3, next to plain;
#   3. `bench model --speculative-num-steps 1,2,3` on the full-width preset (SPEC_BENCH_LAYERS layers, default 8;
#      SPEC_DRAFT_HEADS="shared fp8" times both draft heads).
# SPEC_PARTS=check,serve,model selects parts (default all). Logs in $OUT (or /tmp/gpu-spec).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-spec}
mkdir -p "$LOG"
PARTS=${SPEC_PARTS:-check,serve,model}
if [ ! -x build-gpu/dsserve ] || [ "${SPEC_REBUILD:-1}" = 1 ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
fi
BIN=$PWD/build-gpu/dsserve
TMP=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -KILL $PID 2>/dev/null; rm -rf "$TMP"' EXIT
status=0

source scripts/gpu-serve-lib.sh  # make_ckpt, wait_ready
serve() {  # LOG ARGS...: starts a server on CUDA, sets URL (and SLOG, for generate's diagnosis)
  local log=$1
  SLOG=$log
  shift
  "$BIN" serve --port 0 --device cuda --random-seed 0 "$@" >"$log" 2>&1 &
  PID=$!
  wait_ready "$log" $PID
}
unserve() { [ -n "$PID" ] && kill -TERM $PID && wait $PID; PID=""; }
generate() {  # [MAX_NEW_TOKENS]: 8 greedy continuations in one batch, as JSON
  curl -sS -f "$URL/generate" -H 'Content-Type: application/json' -d '{"text":["The capital of France is","1, 2, 3, 4,",
    "Once upon a time","def main():","The quick brown fox","In 1905, Einstein","SELECT * FROM","Dear Sir or Madam,"],
    "sampling_params":{"temperature":0,"max_new_tokens":'"${1:-96}"',"ignore_eos":true}}' && return 0
  # No reply: say why on stderr (the server may have died), so that one device call tells what failed.
  echo "generate failed against $SLOG (server $(kill -0 "$PID" 2>/dev/null && echo alive || echo gone)):" >&2
  grep -v "^\s*$" "$SLOG" | tail -12 >&2
  return 1
}

if [[ $PARTS == *check* ]]; then
  M=$TMP/tiny
  make_ckpt "$M" --preset tiny --num-layers 2 --seed 3 --bigram-mtp --layer-output-scale 0.2 \
    --override '{"vocab_size": 129280, "max_position_embeddings": 4096}'
  for mode in exact fast; do
    export DSSERVE_CUDA_GEMM=$mode
    serve "$LOG/check-plain-$mode.log" --model-path "$M" --context-length 1024 && generate >"$TMP/plain.json"; unserve
    serve "$LOG/check-spec-$mode.log" --model-path "$M" --context-length 1024 --speculative-algorithm EAGLE \
      --speculative-num-steps 3 && generate >"$TMP/spec.json"; unserve
    python3 - "$TMP/plain.json" "$TMP/spec.json" "$mode" <<'PY' || status=1
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
mode = sys.argv[3]
same = sum(x["output_ids"] == y["output_ids"] for x, y in zip(a, b))
agree = [next((i for i, (p, q) in enumerate(zip(x["output_ids"], y["output_ids"])) if p != q), len(x["output_ids"]))
         for x, y in zip(a, b)]
acc = sum(y["meta_info"]["spec_accept_length"] for y in b) / len(b)
print(f"spec check ({mode} GEMMs, CUDA graphs on): {same}/{len(a)} greedy outputs identical to plain decoding; "
      f"first difference at tokens {agree} of 96; accept length {acc:.2f}")
sys.exit(0 if mode == "fast" or same == len(a) else 1)
PY
  done
  # Draft steps op by op (DSSERVE_DRAFT_GRAPHS=0) against recorded (above, fast mode): the same outputs (the
  # target decides them); the accept lengths say whether the recorded drafts are the op-by-op ones.
  export DSSERVE_CUDA_GEMM=exact
  for graphs in 1 0; do
    DSSERVE_DRAFT_GRAPHS=$graphs serve "$LOG/check-draft-graphs-$graphs.log" --model-path "$M" --context-length 1024 \
      --speculative-algorithm EAGLE --speculative-num-steps 3 && generate >"$TMP/draft$graphs.json"; unserve
  done
  python3 - "$TMP/draft1.json" "$TMP/draft0.json" <<'PY' || status=1
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
same = sum(x["output_ids"] == y["output_ids"] for x, y in zip(a, b))
acc = [sum(r["meta_info"]["spec_accept_length"] for r in v) / len(v) for v in (a, b)]
ver = [sum(r["meta_info"]["spec_verify_ct"] for r in v) for v in (a, b)]
print(f"draft graphs (exact GEMMs): recorded vs op by op: {same}/{len(a)} outputs identical; accept length "
      f"{acc[0]:.3f} vs {acc[1]:.3f}; verify steps {ver[0]} vs {ver[1]}")
sys.exit(0 if same == len(a) else 1)
PY
  # The draft head: the FP8 copy with its top 8 rescored (the default on CUDA, above) against the checkpoint's
  # BF16 head: the same outputs; the accept lengths say what the copy costs in acceptance.
  serve "$LOG/check-draft-head-shared.log" --model-path "$M" --context-length 1024 --speculative-algorithm EAGLE \
    --speculative-num-steps 3 --speculative-draft-head shared && generate >"$TMP/shared.json"; unserve
  python3 - "$TMP/draft1.json" "$TMP/shared.json" <<'PY' || status=1
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
same = sum(x["output_ids"] == y["output_ids"] for x, y in zip(a, b))
acc = [sum(r["meta_info"]["spec_accept_length"] for r in v) / len(v) for v in (a, b)]
print(f"draft head (exact GEMMs): FP8 copy + rescore vs the checkpoint's: {same}/{len(a)} outputs identical; "
      f"accept length {acc[0]:.3f} vs {acc[1]:.3f}")
sys.exit(0 if same == len(a) else 1)
PY
  # Across a pause (a bound no window meets: the first window pauses for 256 steps, the second opens after
  # them): the paused steps' MTP KV goes through the recorded Fill pass (graphs on) or op by op (off). Outputs
  # must be plain decoding's; equal accept lengths and verify counts say the two wrote the same KV.
  serve "$LOG/check-pause-plain.log" --model-path "$M" --context-length 1024 && generate 360 >"$TMP/pplain.json"; unserve
  for graphs in 1 0; do
    DSSERVE_DRAFT_GRAPHS=$graphs serve "$LOG/check-pause-graphs-$graphs.log" --model-path "$M" --context-length 1024 \
      --speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-min-accept-length 10 &&
      generate 360 >"$TMP/pause$graphs.json"; unserve
  done
  python3 - "$TMP/pplain.json" "$TMP/pause1.json" "$TMP/pause0.json" <<'PY' || status=1
import json, sys
p, a, b = (json.load(open(f)) for f in sys.argv[1:4])
same = [sum(x["output_ids"] == y["output_ids"] for x, y in zip(p, v)) for v in (a, b)]
acc = [sum(r["meta_info"]["spec_accept_length"] for r in v) / len(v) for v in (a, b)]
ver = [sum(r["meta_info"]["spec_verify_ct"] for r in v) for v in (a, b)]
print(f"across a pause (exact GEMMs): Fill pass recorded / op by op: {same[0]}/{len(p)} and {same[1]}/{len(p)} outputs "
      f"identical to plain; accept length {acc[0]:.3f} vs {acc[1]:.3f}; decode steps {ver[0]} vs {ver[1]}")
sys.exit(0 if same == [len(p), len(p)] else 1)
PY
  grep -h "speculative decoding paused" "$LOG/check-pause-graphs-1.log" | head -2
  grep -h "draft head:" "$LOG/check-draft-graphs-1.log" | head -1
  unset DSSERVE_CUDA_GEMM
  grep -h "CUDA graphs:" "$LOG/check-spec-fast.log" | head -1
fi

if [[ $PARTS == *serve* ]]; then
  # The demo's shapes (hidden 256, the real vocabulary); a bigram model (scale 0) with its agreeing draft, and
  # the same with a random draft.
  make_ckpt "$TMP/agree" --preset demo --seed 5 --bigram-mtp --layer-output-scale 0
  make_ckpt "$TMP/random" --preset demo --seed 5 --layer-output-scale 0
  bench() {  # CONCURRENCY
    local c=$1
    "$BIN" bench serving --base-url "$URL" --dataset-name random --random-input-len 256 --random-output-len 256 \
      --random-range-ratio 1 --num-prompts $((c * 8 + 8)) --max-concurrency "$c" 2>&1
  }
  # Where each bench's steps went: the engine's step phases (/metrics) over the run, ms per step.
  phases() {  # the two /metrics texts, before and after
    python3 - "$1" "$2" <<'PY'
import re, sys
def parse(text):
    v = {}
    for line in text.splitlines():
        m = re.match(r'^(dsserve:step_phase_seconds_total|dsserve:engine_steps_total)\{([^}]*)\} (\S+)$', line)
        if m:
            ph = re.search(r'phase="([^"]+)"', m.group(2))
            v[ph.group(1) if ph else "steps"] = float(m.group(3))
    return v
a, b = parse(sys.argv[1]), parse(sys.argv[2])
steps = b.get("steps", 0) - a.get("steps", 0)
if steps <= 0:
    print("steps=?")
else:
    parts = [f"{k}={(b[k] - a.get(k, 0)) * 1e3 / steps:.3f}" for k in ("plan", "forward", "draw", "output", "drafts") if k in b]
    print(f"steps={int(steps)} ms/step: " + " ".join(parts))
PY
  }
  echo "model draft S concurrency TPOT_ms ITL_ms out_tok_s accept | steps and ms per step by phase" >"$LOG/serve.txt"
  for model in agree random; do
    for S in 0 1 2 3; do
      args=(--model-path "$TMP/$model" --context-length 2048 --max-running-requests 48)
      [ "$S" -gt 0 ] && args+=(--speculative-algorithm EAGLE --speculative-num-steps "$S")
      [ "$model" = random ] && [ "$S" != 0 ] && [ "$S" != 3 ] && continue
      [ "$model" = random ] && [ "$S" = 0 ] && continue  # plain decoding does not read the draft
      serve "$LOG/serve-$model-$S.log" "${args[@]}" || { status=1; continue; }
      for c in 1 8 32; do
        before=$(curl -sf "$URL/metrics")
        out=$(bench "$c")
        after=$(curl -sf "$URL/metrics")
        echo "$out" >"$LOG/bench-$model-$S-$c.log"
        tpot=$(sed -n 's/^Mean TPOT (ms): *//p' <<<"$out")
        itl=$(sed -n 's/^Mean ITL (ms): *//p' <<<"$out")
        tps=$(sed -n 's/^Output token throughput (tok\/s): *//p' <<<"$out")
        acc=$(sed -n 's/^Accept length: *//p' <<<"$out")
        echo "demo $model $S $c ${tpot:-?} ${itl:-?} ${tps:-?} ${acc:--} | $(phases "$before" "$after")" >>"$LOG/serve.txt"
      done
      unserve
    done
  done
  cat "$LOG/serve.txt"
fi

if [[ $PARTS == *model* ]]; then
  # SPEC_DRAFT_HEADS: the draft heads to time (--speculative-draft-head; default the CUDA default, fp8).
  for head in ${SPEC_DRAFT_HEADS:-fp8}; do
    "$BIN" bench model --preset full-width --num-layers "${SPEC_BENCH_LAYERS:-8}" --device cuda --batch 1,8,32 \
      --prefill '' --context 4096 --speculative-num-steps 1,2,3 --speculative-draft-head "$head" --steps 10 \
      >"$LOG/model-$head.log" 2>&1 || status=1
    echo "-- bench model, draft head $head"
    grep -v "^\[" "$LOG/model-$head.log" | tail -25
  done
fi
exit $status
