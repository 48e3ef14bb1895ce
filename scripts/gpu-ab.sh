#!/usr/bin/env bash
# On the GPU machine (device tool; scripts/device-prepare.sh here first, .device-carry carried): A/B runs of
# environment switches on `bench model`'s decode steps, one process per variant, the baseline run first and
# again last (their agreement is the run-to-run spread the differences must beat). Builds dsserve in
# Release unless AB_BUILD=0 (build-gpu kept from an earlier script of the same call).
#   scripts/gpu-ab.sh "DSSERVE_OVERLAP=0" "DSSERVE_MOE_STREAM=0" ...
#   AB_BATCH=1,2,4,8  AB_LAYERS=8  AB_CONTEXT=4096  AB_STEPS=20  AB_BASE="" (the baseline's own switches)
#   AB_PREFILL=8192   also a prefill chunk of that many tokens per variant (a column: seconds, % of peak)
# Output: a table of step ms per variant and batch (x the roofline of that process's own ceiling) on stdout;
# each process's log under $OUT/ab (or /tmp/gpu-ab).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/gpu-ab}/ab
mkdir -p "$LOG"
source scripts/device-env.sh
if [ "${AB_BUILD:-1}" = 1 ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=ON >"$LOG/build.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" --target dsserve >>"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
fi
base=${AB_BASE:-}
variants=("$base" "$@" "$base")
names=("baseline" "$@" "baseline again")
batches=${AB_BATCH:-1,2,4,8}
prefill=${AB_PREFILL:-}
printf "| variant |"; for b in ${batches//,/ }; do printf " batch %s |" "$b"; done
[ -n "$prefill" ] && printf " prefill %s |" "$prefill"
printf " ceiling GB/s |\n|---|"
for b in ${batches//,/ }; do printf -- "---|"; done; [ -n "$prefill" ] && printf -- "---|"; printf -- "---|\n"
for i in "${!variants[@]}"; do
  f="$LOG/run-$i.txt"
  # shellcheck disable=SC2086  # the variant's assignments, word-split on purpose
  env ${variants[$i]} timeout 120 build-gpu/dsserve bench model --preset full-width --num-layers "${AB_LAYERS:-8}" \
    --device cuda --batch "$batches" --context "${AB_CONTEXT:-4096}" --prefill "$prefill" --steps "${AB_STEPS:-20}" \
    >"$f" 2>&1
  rc=$?
  printf "| %s |" "${names[$i]:-baseline}"
  for b in ${batches//,/ }; do
    # bench model's decode rows: layers, batch, step ms, ... x roof (last column)
    awk -v b="$b" -v rc="$rc" '$2 == b && $3 ~ /^[0-9.]+$/ && NF > 10 {printf " %s (%sx) |", $3, $NF; found = 1}
      END {if (!found) printf " %s |", (rc ? "exit " rc : "-")}' "$f"
  done
  # bench model's prefill rows: layers, tokens, seconds, tok/s, TFLOP, TFLOP/s, % peak
  [ -n "$prefill" ] && awk -v n="$prefill" '/^Prefill/ {on = 1} on && $2 == n && NF == 7 {printf " %s s (%s) |", $3, $7; found = 1}
    END {if (!found) printf " - |"}' "$f"
  printf " %s |\n" "$(grep -o 'HBM ceiling [0-9]*' "$f" | awk '{print $3}')"
done
