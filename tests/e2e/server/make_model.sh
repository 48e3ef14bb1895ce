#!/usr/bin/env bash
# ctest fixture: the e2e server model in the build tree -- make-model's tiny layers with DeepSeek's
# real vocabulary and tokenizer files (fast on 2 CPU cores, real text in and out).
# usage: make_model.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
[ -f "$MODEL/tokenizer.json" ] && exit 0
tmp="$MODEL.tmp.$$"
rm -rf "$tmp"
"$BIN" make-model --preset tiny --num-layers 1 --seed 1 \
  --override '{"vocab_size": 129280, "max_position_embeddings": 4096}' --out "$tmp" >/dev/null
cp "$TOKDIR/tokenizer.json" "$TOKDIR/tokenizer_config.json" "$tmp/"
rm -rf "$MODEL"
mv "$tmp" "$MODEL"
echo "made $MODEL"
