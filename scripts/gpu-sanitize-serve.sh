#!/usr/bin/env bash
# On the GPU machine (device tool, after scripts/gpu-check.sh built build-gpu/dsserve in the same call):
# `dsserve serve --device cuda` on the demo model under compute-sanitizer (memcheck, then racecheck),
# driven by a short `bench serving` run (streaming, several requests in one batch, CUDA graphs recorded at
# start-up and replayed), then SIGTERM. Small limits keep the sanitized start-up short (context 4096, 8
# running requests: 20 recorded shapes). Prints each tool's summary line; logs in $OUT or /tmp/gpu-sanitize.
#   SAN_TOOLS="memcheck racecheck"   SAN_PROMPTS=8
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-sanitize}
mkdir -p "$LOG"
DS=build-gpu/dsserve
[ -x $DS ] || { echo "build-gpu/dsserve missing: run scripts/gpu-check.sh first"; exit 1; }
DEMO=/tmp/demo-model
[ -f $DEMO/config.json ] || $DS make-model --preset demo --seed 0 --out $DEMO >/dev/null 2>&1
cp .device-carry/tokenizer.json $DEMO/ 2>/dev/null
status=0
for tool in ${SAN_TOOLS:-memcheck racecheck}; do
  port=30020
  compute-sanitizer --tool "$tool" --log-file "$LOG/sanitizer-$tool.txt" --print-limit 20 \
    $DS serve --model-path $DEMO --device cuda --port $port --encoder dsv32 --served-model-name demo \
    --context-length 4096 --max-running-requests 8 >"$LOG/serve-$tool.log" 2>&1 &
  pid=$!
  ready=0
  for _ in $(seq 1 900); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && { ready=1; break; }; sleep 0.2; done
  if [ $ready = 1 ]; then
    timeout 150 $DS bench serving --backend sglang --port $port --dataset-name random --random-input-len 200 \
      --random-output-len 24 --random-range-ratio 1 --num-prompts "${SAN_PROMPTS:-8}" --max-concurrency 4 \
      --tokenizer $DEMO >"$LOG/bench-$tool.txt" 2>&1 || echo "$tool: bench failed"
    grep -h "Successful requests" "$LOG/bench-$tool.txt" | sed "s/^/$tool: /"
  else
    echo "$tool: the server did not come up"; tail -5 "$LOG/serve-$tool.log"; status=1
  fi
  # SIGTERM to the server, not to compute-sanitizer (its parent): killed itself, the tool dies before
  # it writes its summary. The tool exits with the server's status once it has reported.
  pkill -TERM -P $pid 2>/dev/null; wait $pid
  echo "$tool: exit $?, $(grep -h 'ERROR SUMMARY\|RACECHECK SUMMARY' "$LOG/sanitizer-$tool.txt" | tail -1)"
  grep -q "ERROR SUMMARY: 0 errors\|RACECHECK SUMMARY: 0 hazards" "$LOG/sanitizer-$tool.txt" || status=1
done
exit $status
