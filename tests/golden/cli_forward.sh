#!/usr/bin/env bash
# `dsserve forward` on a golden checkpoint writes the logits transformers computed (max rel err <= 1e-4), also
# when all but the first 8 tokens go through the decode path one token per step (--decode-from 8).
set -euo pipefail
BIN=$1 ROOT=$2
PY=/usr/bin/python3
$PY -c "import numpy" 2>/dev/null || { echo "python3-numpy missing: skipped"; exit 77; }
out=$(mktemp --suffix=.npy); trap 'rm -f "$out"' EXIT
for case in tiny_v32_fp8:fp32:0 tiny_v32_fp8:fp8:0 tiny_v3_bf16:fp32:0 tiny_v32_fp8:fp32:8 tiny_v32_fp8:fp8:8; do
  IFS=: read -r name mode from <<<"$case"
  dir=$ROOT/tests/golden/$name
  ids=$($PY -c "import json,sys;print(','.join(map(str,json.load(open(sys.argv[1]))['sequences'][0])))" "$dir/ref/tokens.json")
  "$BIN" forward --model-path "$dir" --token-ids "$ids" --indexer "$mode" --decode-from "$from" --out "$out" \
    --log-level warning
  $PY - "$out" "$dir/ref/logits_${mode}_0.npy" "$case" <<'PYEOF'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
rel = float(np.abs(a - b).max() / np.abs(b).max())
print(f"{sys.argv[3]}: dsserve forward vs transformers, max rel err {rel:.3g}")
sys.exit(0 if rel <= 1e-4 else 1)
PYEOF
done
