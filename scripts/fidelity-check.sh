#!/usr/bin/env bash
# On the GPU machine (device tool, after scripts/device-prepare.sh here, .device-carry carried): dsserve's
# numerics against the DeepSeek-numerics reference (tools/reference/deepseek_numerics.py), docs/ACCURACY.md.
#  1. builds dsserve (CUDA) while the reference makes the tiny checkpoints' fixtures (tiny_fixtures.tgz)
#  2. a full-width checkpoint cut to FID_LAYERS layers (64 experts), FID_T random tokens; FID_TOPK sets
#     index_topk (default the model's 2048: then the indexer selects every token of FID_T < 2048 and its
#     approximations cannot show; e.g. FID_TOPK=32 makes it select)
#  3. `dsserve forward --device cuda --indexer fp8` in the exact mode, the fast mode, and with each fast-mode
#     approximation alone (DSSERVE_CUDA_FAST_PARTS), and through the decode path (--decode-from 32);
#     `dsserve generate` greedy FID_GREEDY tokens (exact, fast)
#  4. tools/reference/fidelity.py full: the table (full.log, results.json)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device-env.sh
LOG=${OUT:-/tmp/fidelity}
W=/tmp/fid
mkdir -p "$LOG" "$W/ds"
LAYERS=${FID_LAYERS:-2} T=${FID_T:-96} GREEDY=${FID_GREEDY:-256} TOPK=${FID_TOPK:-2048}
t0=$(date +%s)
(cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSSERVE_CUDA=ON -DDSSERVE_TESTS=OFF &&
  cmake --build build-gpu -j "$(nproc)" --target dsserve) >"$LOG/build.log" 2>&1 &
build_pid=$!
[ "${FID_TINY:-1}" = 1 ] && { PYTHONUNBUFFERED=1 python3 tools/reference/fidelity.py tiny "$W/tiny" >"$LOG/tiny.log" 2>&1 ||
  echo "tiny reference FAILED"; }
tar -C "$W" -czf "$LOG/tiny_fixtures.tgz" tiny 2>/dev/null
wait $build_pid || { tail -30 "$LOG/build.log"; echo "BUILD FAILED"; exit 1; }
t1=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$LOG/device.txt"
B=build-gpu/dsserve
CK=$W/fw
$B make-model --preset full-width --num-layers "$LAYERS" --seed 7 --out "$CK" \
  --override "{\"n_routed_experts\":64,\"num_nextn_predict_layers\":0,\"index_topk\":$TOPK}" >"$LOG/run.log" 2>&1 || { tail "$LOG/run.log"; exit 1; }
t2=$(date +%s)
IDS=$(python3 -c "import numpy as np; print(','.join(map(str, np.random.default_rng(11).integers(2, 129280, $T))))")
PROMPT=$(echo "$IDS" | cut -d, -f1-32)
fwd() {  # name, env assignments..., then -- extra flags
  local name=$1; shift
  local envs=() extra=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift && extra=("$@")
  env "${envs[@]}" $B forward --model-path "$CK" --token-ids "$IDS" --device cuda --indexer "${IDX:-fp8}" --log-level info \
    --out "$W/ds/$name.npy" "${extra[@]}" >>"$LOG/run.log" 2>&1 || echo "forward $name FAILED"
}
fwd exact DSSERVE_CUDA_GEMM=exact
fwd fast DSSERVE_CUDA_GEMM=fast -- --kv-cache-dtype bf16
IDX=fp32 fwd fast_fp32_indexer DSSERVE_CUDA_GEMM=fast -- --kv-cache-dtype bf16
fwd only_fp8_act DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=fp8_act
fwd only_bf16_gemm DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=bf16_gemm
fwd only_tf32_absorb DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=tf32_absorb
fwd only_tc_indexer DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=tc_indexer
fwd only_bf16_kv DSSERVE_CUDA_GEMM=exact -- --kv-cache-dtype bf16
fwd bf16_kv_tc_attention DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=tc_attention -- --kv-cache-dtype bf16
# The bf16 absorptions (on the absorbed path only: FID_TOPK below FID_T, e.g. 32, else short contexts take the
# dense MHA path and these two equal exact / fast): alone (the SIMT attention on widened queries), and with
# every fast part.
fwd bf16_kv_bf16_absorb DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=bf16_absorb -- --kv-cache-dtype bf16
fwd fast_all DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=all -- --kv-cache-dtype bf16
# The decode path (GEMV projections, decode attention): positions from 32 on, one token per step.
fwd decode_exact DSSERVE_CUDA_GEMM=exact -- --decode-from 32
fwd decode_fast DSSERVE_CUDA_GEMM=fast -- --kv-cache-dtype bf16 --decode-from 32
# ... and without the TF32 decode GEMV (the hi + lo split GEMV, fp32-accurate), to see that form's share.
fwd decode_fast_split_gemv DSSERVE_CUDA_GEMM=fast DSSERVE_CUDA_FAST_PARTS=fp8_act,bf16_gemm,tf32_absorb,tc_attention,tc_indexer \
  -- --kv-cache-dtype bf16 --decode-from 32
# ... and with the decode MoE's exact split kernel instead of its f16 form (DSSERVE_MOE_F16_X=0).
fwd decode_fast_exact_moe DSSERVE_CUDA_GEMM=fast DSSERVE_MOE_F16_X=0 -- --kv-cache-dtype bf16 --decode-from 32
grep -h "GEMM mode\|forward of" "$LOG/run.log" | sort | uniq -c | head -20
gen() {
  local name=$1; shift
  env "$@" $B generate --model-path "$CK" --token-ids "$PROMPT" --max-new-tokens "$GREEDY" --device cuda \
    --indexer fp8 --log-level warning "${GEN_FLAGS[@]}" >"$W/ds/$name.tokens" 2>>"$LOG/run.log" || echo "generate $name FAILED"
}
GEN_FLAGS=(--kv-cache-dtype bf16); gen fast DSSERVE_CUDA_GEMM=fast
GEN_FLAGS=(); gen exact DSSERVE_CUDA_GEMM=exact
t3=$(date +%s)
PYTHONUNBUFFERED=1 timeout 240 python3 tools/reference/fidelity.py full "$CK" --tokens "$IDS" --dsserve "$W/ds" \
  --prompt "$PROMPT" --greedy "$GREEDY" --out "$LOG/results.json" >"$LOG/full.log" 2>&1 || echo "full reference FAILED"
t4=$(date +%s)
echo "build $((t1 - t0)) s, make-model $((t2 - t1)) s, dsserve runs $((t3 - t2)) s, reference $((t4 - t3)) s"
cat $(ls "$LOG/tiny.log" "$LOG/full.log" 2>/dev/null) | grep -v "^reference \(transformers\|deepseek\)"
