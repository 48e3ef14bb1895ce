#!/usr/bin/env bash
# On the GPU machine (device tool; run scripts/device-prepare.sh here first and carry .device-carry):
# builds dsserve, serves the demo model with --device cuda, drives it with the OpenAI-style API and
# `dsserve bench serving` (the sglang.bench_serving report), and prints the reports. Logs in $OUT.
#   GPU_SERVE_PROMPTS=10 GPU_SERVE_LEN=1024   the issue-5 run (input = output length, concurrency 1)
#   GPU_SERVE_EAGER=0 / GPU_SERVE_CPU=0        skip the --disable-cuda-graph / the CPU comparison
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/gpu-serve}
mkdir -p "$LOG"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON >"$LOG/build.log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 ||
  { tail -30 "$LOG/build.log"; echo "BUILD FAILED"; exit 1; }
DS=build-gpu/dsserve
DEMO=/tmp/demo-model
$DS make-model --preset demo --seed 0 --out $DEMO >/dev/null 2>&1
cp .device-carry/tokenizer.json $DEMO/
[ -f .device-carry/tokenizer_config.json ] && cp .device-carry/tokenizer_config.json $DEMO/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$LOG/device.txt"
serve() {  # serve DEVICE PORT EXTRA...
  local dev=$1 port=$2; shift 2
  $DS serve --model-path $DEMO --device "$dev" --port "$port" --encoder dsv32 --served-model-name demo "$@" >"$LOG/serve-$dev-$port.log" 2>&1 &
  echo $! >/tmp/serve-$dev.pid
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0; sleep 0.2; done
  tail -20 "$LOG/serve-$dev-$port.log"; return 1
}
bench() {  # bench PORT PROMPTS IN OUT CONCURRENCY TAG
  timeout 240 $DS bench serving --backend sglang --port "$1" --dataset-name random --random-input-len "$3" \
    --random-output-len "$4" --random-range-ratio 1 --num-prompts "$2" --max-concurrency "$5" --tokenizer $DEMO \
    --output-file "$LOG/bench.jsonl" 2>&1 | tee "$LOG/bench-$6.txt" | sed -n '/Serving Benchmark Result/,/====*$/p'
}
status=0
if serve cuda 30000; then
  curl -s http://127.0.0.1:30000/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16,"temperature":0}' | tee "$LOG/chat.json"; echo
  N=${GPU_SERVE_PROMPTS:-10}; L=${GPU_SERVE_LEN:-1024}
  echo "== cuda: $N prompts, $L in / $L out, concurrency 1"; bench 30000 "$N" "$L" "$L" 1 cuda-c1
  echo "== cuda: 64 prompts, 256 in / 256 out, concurrency 32"; bench 30000 64 256 256 32 cuda-c32
  kill -TERM "$(cat /tmp/serve-cuda.pid)"; wait "$(cat /tmp/serve-cuda.pid)" || status=1
else
  status=1
fi
# The same two loads op by op (no CUDA graphs): what the recorded decode steps gain.
if [ "${GPU_SERVE_EAGER:-1}" = 1 ] && serve cuda 30002 --disable-cuda-graph; then
  echo "== cuda, --disable-cuda-graph: $N prompts, $L in / $L out, concurrency 1"; bench 30002 "$N" "$L" "$L" 1 eager-c1
  echo "== cuda, --disable-cuda-graph: 64 prompts, 256 in / 256 out, concurrency 32"; bench 30002 64 256 256 32 eager-c32
  kill -TERM "$(cat /tmp/serve-cuda.pid)"; wait "$(cat /tmp/serve-cuda.pid)" || status=1
fi
if [ "${GPU_SERVE_CPU:-1}" = 1 ] && serve cpu 30001 --threads "$(nproc)"; then
  echo "== cpu ($(nproc) threads): 4 prompts, 256 in / 256 out, concurrency 1"; bench 30001 4 256 256 1 cpu-c1
  kill -TERM "$(cat /tmp/serve-cpu.pid)"; wait "$(cat /tmp/serve-cpu.pid)" || status=1
fi
grep -h "step\|KV\|pool\|CUDA graph" "$LOG/serve-cuda-30000.log" | head -12
# The engine's own step (no HTTP) with sampling on the device, then with the old host path.
E="$DS bench engine --model-path $DEMO --device cuda --running 1,64,256 --steps 30 --input-len 32"
echo "== engine step on cuda: sampling on the device (CUDA graphs, then op by op), then on the host"
timeout 90 $E 2>&1 | tee "$LOG/engine.txt"
timeout 90 $E --cuda-graph-max-bs 0 2>&1 | tee -a "$LOG/engine.txt"
timeout 120 $E --host-sampling 2>&1 | tee -a "$LOG/engine.txt"
exit $status
