#!/usr/bin/env bash
# On a machine with two or more GPUs (device kind nvidia-h200-x2: issue 15; run scripts/device-prepare.sh
# here first and carry .device-carry): the parallel layouts on real GPUs in one call.
#   1. gpu_dist_check: NCCL collectives, --tp 2 / --tp 2 --ep 2 / --tp 2 --dp 2 --enable-dp-attention on
#      GPUs 0 and 1 against one rank (tiny golden models, exact GEMM mode), the collective tables (all-reduce
#      fp32 / bf16, DP attention's all-gather / reduce-scatter) next to torch.distributed's on the same sizes.
#   2. The demo model served on one GPU, with --tp 2, with --tp 2 --dp 2 --enable-dp-attention, and with
#      --tp 2 over two "nodes" (two processes on this machine, GPU 0 and GPU 1: NCCL across processes,
#      the multi-node path): greedy /generate of 4 prompts x 128 tokens must be identical to one GPU in
#      exact GEMM mode; in fast mode the agreement is reported.
#   3. bench serving (random 256/256) at concurrency 1 and 64 for one GPU, --tp 2 and DP attention;
#      bench model (4 full-width layers) with --tp 2, --tp 2 --dp 2, --tp 2 --ep 2 --dp 2.
# Logs in $OUT (at most 8 files come back); a summary last. NCCL_NVLS_ENABLE=0 as the device notes say.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
export NCCL_NVLS_ENABLE=0
LOG=${OUT:-/tmp/gpu-multi}
mkdir -p "$LOG"
GPUS=$(nvidia-smi -L | wc -l)
[ "$GPUS" -ge 2 ] || { echo "gpu-multi-check: $GPUS GPU(s); needs 2"; exit 2; }
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target dsserve gpu_dist_check >>"$LOG/build.log" 2>&1 ||
  { tail -30 "$LOG/build.log"; echo "BUILD FAILED"; exit 1; }
DS=build-gpu/dsserve
DEMO=/tmp/demo-model
$DS make-model --preset demo --seed 0 --out $DEMO >/dev/null 2>&1
cp .device-carry/tokenizer.json $DEMO/
[ -f .device-carry/tokenizer_config.json ] && cp .device-carry/tokenizer_config.json $DEMO/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$LOG/device.txt"

DSSERVE_CUDA_GEMM=exact build-gpu/tests/gpu/gpu_dist_check >"$LOG/dist.log" 2>&1
dist=$?
grep -E "^(ok|FAIL)|collectives|^  [a-z]" "$LOG/dist.log"
# The peer of those collective tables: the same sizes through torch.distributed (NCCL), same timing.
timeout 180 python3 scripts/bench_torch_collectives.py "$GPUS" 2>&1 | tee "$LOG/torch-collectives.log" | grep -v Warning

PORT=31000
serve() {  # serve NAME ARGS...: starts the server, waits until healthy
  local name=$1; shift
  PORT=$((PORT + 1))
  $DS serve --model-path $DEMO --device cuda --port $PORT --encoder dsv32 --served-model-name demo "$@" \
    >>"$LOG/serve.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 900); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0; sleep 0.2; done
  echo "$name: the server did not come up"; tail -20 "$LOG/serve.log"; return 1
}
stop() { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
greedy() {  # the texts of 4 prompts x 128 greedy tokens
  curl -s "http://127.0.0.1:$PORT/generate" -H 'content-type: application/json' -d '{"text":["The capital of France is",
    "def fibonacci(n):","Once upon a time","1, 2, 3,"],"sampling_params":{"temperature":0,"max_new_tokens":128,
    "ignore_eos":true}}' | python3 -c 'import json,sys; print(json.dumps([x["output_ids"] for x in json.load(sys.stdin)]))'
}
bench() {  # bench TAG CONCURRENCY PROMPTS
  timeout 240 $DS bench serving --backend sglang --port $PORT --dataset-name random --random-input-len 256 \
    --random-output-len 256 --random-range-ratio 1 --num-prompts "$3" --max-concurrency "$2" --tokenizer $DEMO \
    >"$LOG/bench-$1.txt" 2>&1
  grep -E "Output token throughput|Mean TPOT|Median ITL" "$LOG/bench-$1.txt" | sed "s/^/  $1: /"
}
status=0
for mode in exact fast; do
  export DSSERVE_CUDA_GEMM=$mode
  serve one && { greedy >"$LOG/greedy-one-$mode.json"; [ $mode = fast ] && { bench one-c1 1 8; bench one-c64 64 128; }; stop; }
  for layout in "--tp 2" "--tp 2 --dp 2 --enable-dp-attention"; do
    # shellcheck disable=SC2086
    serve "$layout" $layout || { status=1; continue; }
    greedy >"$LOG/greedy-tp-$mode.json"
    tag=$(echo "$layout" | tr -d ' -')
    [ $mode = fast ] && { bench "$tag-c1" 1 8; bench "$tag-c64" 64 128; }
    stop
    python3 - "$LOG/greedy-one-$mode.json" "$LOG/greedy-tp-$mode.json" "$layout" "$mode" <<'PY' || status=1
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
same = sum(x == y for p, q in zip(a, b) for x, y in zip(p, q)); total = sum(len(p) for p in a)
print(f"{sys.argv[3]} ({sys.argv[4]} GEMMs): {same}/{total} greedy tokens equal to one GPU")
sys.exit(0 if sys.argv[4] == "fast" or same == total else 1)
PY
  done
done
# Two processes as two nodes, GPU 0 and GPU 1 (exact GEMMs): NCCL across processes, the control channel.
export DSSERVE_CUDA_GEMM=exact
NODES=(--tp 2 --nnodes 2 --dist-init-addr 127.0.0.1:29555)
$DS serve --model-path $DEMO --device cuda --encoder dsv32 "${NODES[@]}" --node-rank 1 --base-gpu-id 1 \
  >"$LOG/node1.log" 2>&1 &
N1=$!
if serve "--tp 2 over 2 nodes" "${NODES[@]}" --node-rank 0; then
  greedy >"$LOG/greedy-nodes.json"
  stop
  python3 -c "import json,sys; a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2])); \
print('--tp 2 over 2 nodes (exact):', 'identical' if a==b else 'DIFFERENT', 'to one GPU'); sys.exit(a!=b)" \
    "$LOG/greedy-one-exact.json" "$LOG/greedy-nodes.json" || status=1
else
  status=1
fi
wait $N1 || { echo "node 1 exited non-zero"; tail -5 "$LOG/node1.log"; status=1; }
# The model step over two GPUs: --tp 2 and DP attention, full-width layers, per-rank times.
export DSSERVE_CUDA_GEMM=fast
for layout in "--tp 2" "--tp 2 --dp 2" "--tp 2 --ep 2 --dp 2"; do
  echo "== bench model $layout"
  # shellcheck disable=SC2086
  timeout 200 $DS bench model --preset full-width --num-layers 4 --device cuda $layout --batch 1,32 --context 4096 \
    --prefill '' --steps 10 --warmup 3 2>&1 | grep -E "^(batch|  rank|HBM|model)" | tee -a "$LOG/bench-model.txt"
done
echo "== gpu-multi-check: gpu_dist_check $( [ $dist = 0 ] && echo pass || echo FAIL ), serving $( [ $status = 0 ] && echo pass || echo FAIL )"
[ $dist = 0 ] && [ $status = 0 ]
