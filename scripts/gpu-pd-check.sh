#!/usr/bin/env bash
# On the GPU machine (device tool; scripts/device-prepare.sh here first, .device-carry carried): prefill/decode
# disaggregation on CUDA (issue 21). A prefill server and a decode server share the one GPU (each its own KV
# pool), the KV goes over UCX (staged through host memory), `dsserve router --pd-disaggregation` in front.
#   1. check: a tiny model with the real vocabulary, served plainly and as a pair: 8 greedy /generate
#      continuations identical (exact GEMM mode; agreement reported in the fast mode), and with speculative
#      decoding on both sides (exact: identical, verify steps and drafts per request compared);
#   2. measure: a full-width checkpoint (PD_LAYERS layers, default 4: 3 dense + 1 MoE), `bench serving`
#      random PD_INPUTS (default 1024,8192) in / 128 out at concurrency 1 and 8, plain server vs pair: TTFT,
#      TPOT, ITL; from both sides' /metrics: KV bytes per prompt, pack and unpack time, the decode side's
#      wait from arrival to joining the batch.
# PD_PARTS=check,measure selects parts. Logs in $OUT (or /tmp/gpu-pd); summary at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-pd}
mkdir -p "$LOG"
PARTS=${PD_PARTS:-check,measure}
# PD_DEVICE=cpu PD_BIN=build/dsserve PD_REBUILD=0: a dry run of the script on a machine without a GPU.
DEVICE=${PD_DEVICE:-cuda}
if [ -z "${PD_BIN:-}" ] && { [ ! -x build-gpu/dsserve ] || [ "${PD_REBUILD:-1}" = 1 ]; }; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
fi
grep -h "UCX .*found" "$LOG/build.log" build-gpu/CMakeCache.txt 2>/dev/null | head -1
BIN=${PD_BIN:-$PWD/build-gpu/dsserve}
TMP=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT
status=0

source scripts/gpu-serve-lib.sh  # make_ckpt, wait_ready
serve() {  # LOG ARGS...: a server on CUDA; sets URL and adds its pid
  local log=$1
  shift
  "$BIN" serve --port 0 --device "$DEVICE" --random-seed 0 "$@" >"$log" 2>&1 &
  PIDS+=($!)
  wait_ready "$log" $!
}
# pair NAME ARGS...: a prefill and a decode server with ARGS each and the router; sets PRE, DEC, ROUTER.
pair() {
  local name=$1
  shift
  serve "$LOG/$name-prefill.log" "$@" --disaggregation-mode prefill --disaggregation-bootstrap-port 0 || return 1
  PRE=$URL
  local boot
  boot=$(grep -o 'bootstrap port [0-9]*' "$LOG/$name-prefill.log" | awk '{print $3}')
  serve "$LOG/$name-decode.log" "$@" --disaggregation-mode decode || return 1
  DEC=$URL
  "$BIN" router --port 0 --pd-disaggregation --prefill "$PRE" "$boot" --decode "$DEC" >"$LOG/$name-router.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$LOG/$name-router.log" $! || return 1
  ROUTER=$URL
}
stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}
generate() {  # URL: 8 greedy continuations (one request each, at once), as JSON lines in order
  local i
  local prompts=("The capital of France is" "1, 2, 3, 4," "Once upon a time" "def main():" "The quick brown fox"
                 "In 1905, Einstein" "SELECT * FROM" "Dear Sir or Madam,")
  local curls=()
  for i in "${!prompts[@]}"; do
    curl -sf "$1/generate" -H 'Content-Type: application/json' -d "{\"text\":\"${prompts[$i]}\",
      \"sampling_params\":{\"temperature\":0,\"max_new_tokens\":64,\"ignore_eos\":true}}" >"$TMP/gen-$i.json" &
    curls+=($!)
  done
  wait "${curls[@]}"  # (not a bare wait: the servers are jobs of this shell too)
  for i in "${!prompts[@]}"; do cat "$TMP/gen-$i.json"; echo; done
}

if [[ $PARTS == *check* ]]; then
  M=$TMP/tiny
  make_ckpt "$M" --preset tiny --num-layers 2 --seed 3 --override '{"vocab_size": 129280, "max_position_embeddings": 4096}' \
    --bigram-mtp --layer-output-scale 0.2 --mtp-attention-scale 0.2
  for mode in exact fast exact-spec; do
    export DSSERVE_CUDA_GEMM=${mode%-spec}
    args=(--model-path "$M" --context-length 1024 --max-total-tokens 65536)
    # -spec: speculative decoding on both sides (the decode side verifies the prefill side's drafts first)
    [[ $mode == *-spec ]] && args+=(--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-min-accept-length 0)
    serve "$LOG/check-plain-$mode.log" "${args[@]}" && generate "$URL" >"$TMP/plain.jsonl"
    stop_all
    pair "check-$mode" "${args[@]}" && generate "$ROUTER" >"$TMP/pd.jsonl"
    stop_all
    python3 - "$TMP/plain.jsonl" "$TMP/pd.jsonl" "$mode" <<'PY' || status=1
import json, sys
a = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
b = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
mode = sys.argv[3]
same = sum(x["output_ids"] == y["output_ids"] for x, y in zip(a, b)) if len(a) == len(b) == 8 else 0
spec = ""
if mode.endswith("-spec") and len(a) == len(b) == 8:
    counts = lambda v: [(r["meta_info"].get("spec_verify_ct"), r["meta_info"].get("spec_draft_token_num")) for r in v]
    acc = sum(r["meta_info"].get("spec_accept_length", 0) for r in b) / 8
    spec = (f"; verify steps and drafts per request {'equal' if counts(a) == counts(b) else 'DIFFERENT'} "
            f"({counts(b)[:3]}...); accept length {acc:.2f}")
print(f"pd check ({mode} GEMMs): {same}/8 greedy /generate outputs through the prefill/decode "
      f"pair identical to one plain server{spec}")
sys.exit(0 if same == 8 or (mode == "fast" and len(b) == 8) else 1)
PY
  done
  unset DSSERVE_CUDA_GEMM
fi

if [[ $PARTS == *measure* ]]; then
  M=$TMP/fullwidth
  layers=${PD_LAYERS:-4}
  t0=$(date +%s)
  make_ckpt "$M" --preset "${PD_PRESET:-full-width}" --num-layers "$layers" --override '{"num_nextn_predict_layers":0}' --seed 0
  echo "make-model ${PD_PRESET:-full-width} $layers layers: $(($(date +%s) - t0)) s, $(du -sh "$M" | cut -f1)"
  args=(--enable-metrics --model-path "$M" --context-length 16384 --max-total-tokens 400000 --chunked-prefill-size 8192)
  metrics() {  # URL: the dsserve:pd_* counters as "name value" lines
    curl -sf "$1/metrics" | awk '/^dsserve:pd_kv/ {sub(/\{.*\}/, "", $1); print $1, $2}'
  }
  bench() {  # URL TAG INPUT CONCURRENCY
    local n=$(($4 * 4 + 2))
    timeout 150 "$BIN" bench serving --base-url "$1" --dataset-name random --random-input-len "$3" \
      --random-output-len 128 --random-range-ratio 1 --num-prompts "$n" --max-concurrency "$4" --tokenizer "$M" \
      --output-file "$TMP/bench.jsonl" \
      >"$TMP/bench-$2.txt" 2>&1 || status=1
    local ttft tpot itl tps
    ttft=$(sed -n 's/^Mean TTFT (ms): *//p' "$TMP/bench-$2.txt")
    tpot=$(sed -n 's/^Mean TPOT (ms): *//p' "$TMP/bench-$2.txt")
    itl=$(sed -n 's/^P99 ITL (ms): *//p' "$TMP/bench-$2.txt")
    tps=$(sed -n 's/^Output token throughput (tok\/s): *//p' "$TMP/bench-$2.txt")
    echo "$2 $3 $4 $n ${ttft:-?} ${tpot:-?} ${itl:-?} ${tps:-?}" >>"$LOG/measure.txt"
  }
  echo "setup input concurrency prompts TTFT_ms TPOT_ms P99_ITL_ms out_tok_s" >"$LOG/measure.txt"
  IFS=, read -ra inputs <<<"${PD_INPUTS:-1024,8192}"
  if serve "$LOG/measure-plain.log" "${args[@]}"; then
    for in in "${inputs[@]}"; do for c in ${PD_CONC:-1 8}; do bench "$URL" plain "$in" "$c"; done; done
  else status=1; fi
  stop_all
  echo "side counter input concurrency value" >"$LOG/pd-metrics.txt"
  # PD_UCX_MODES: UCX's lanes per pair (src/disagg/ucx_transfer.cpp): "peer" (the default: peer error
  # handling, shared-memory FIFOs with their peer checks on), "peer-tcp" (peer error handling with those
  # checks off: what the default was before, TCP loopback on one host), "none" (no error handling: every
  # lane, cma's zero-copy included).
  for ucx in ${PD_UCX_MODES:-peer}; do
    export DSSERVE_UCX_ERR_MODE=${ucx%-tcp}
    if [ "$ucx" = peer-tcp ]; then export UCX_POSIX_ERROR_HANDLING=n UCX_SYSV_ERROR_HANDLING=n; fi
    if pair "measure-$ucx" "${args[@]}"; then
      for in in "${inputs[@]}"; do
        for c in ${PD_CONC:-1 8}; do
          bench "$ROUTER" "pd-$ucx" "$in" "$c"
          metrics "$PRE" | sed "s/^/prefill /; s/ \([^ ]*\)$/ $in-$ucx $c \1/" >>"$LOG/pd-metrics.txt"
          metrics "$DEC" | sed "s/^/decode /; s/ \([^ ]*\)$/ $in-$ucx $c \1/" >>"$LOG/pd-metrics.txt"
        done
      done
      grep -h "UCX: endpoint" "$LOG/measure-$ucx-prefill.log" | head -1
    else status=1; fi
    stop_all
    unset DSSERVE_UCX_ERR_MODE UCX_POSIX_ERROR_HANDLING UCX_SYSV_ERROR_HANDLING
  done
  cat "$LOG/measure.txt"
  # Per prompt, from the counters' growth over each run.
  python3 - "$LOG/pd-metrics.txt" <<'PY'
import sys, collections
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
runs, last = collections.OrderedDict(), collections.defaultdict(float)
for side, name, inp, c, v in rows:  # both sides list every counter: keep the side that counts it
    key = (side, name, inp.split("-", 1)[-1])  # counters restart with each pair (a UCX mode)
    d = float(v) - last[key]
    last[key] = float(v)
    if d: runs.setdefault((inp, c), {})[name] = d
print("input concurrency prompts KV_MB_per_prompt pack_ms unpack_ms decode_wait_ms (per prompt; wait = arrival "
      "at the decode server to joining its batch: the prefill server's queue + prefill + transfer)")
for (inp, c), m in runs.items():
    n = m.get("dsserve:pd_kv_received_total", 0) or 1
    print(inp, c, int(n), f'{m.get("dsserve:pd_kv_received_bytes_total", 0) / n / 1e6:.2f}',
          f'{m.get("dsserve:pd_kv_pack_seconds_total", 0) / n * 1e3:.2f}',
          f'{m.get("dsserve:pd_kv_unpack_seconds_total", 0) / n * 1e3:.2f}',
          f'{m.get("dsserve:pd_kv_wait_seconds_total", 0) / n * 1e3:.1f}')
PY
  grep -h "KV pool" "$LOG"/measure-*-decode.log | head -1
fi
exit $status
