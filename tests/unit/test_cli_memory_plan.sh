#!/usr/bin/env bash
# `dsserve memory-plan` on DeepSeek-V3.2's shapes (make-model's full-width preset, 61 layers + MTP): the
# per-rank weights must add up to the model's ~690 GB (701.6 GB with the MTP layer, BF16 embedding and head
# and the scales' padding), TP8 must cut the experts and attention 8 ways, DP attention must hold the whole
# attention and vocabulary on each rank, a GPU too small must fail naming the cause, and the KV bytes per
# token must be 61 x (576 x 2 + 128 x 4).
# usage: test_cli_memory_plan.sh DSSERVE
set -euo pipefail
BIN=$1
fail() { echo "FAIL: $*"; exit 1; }
field() {  # OUTPUT COLUMN (1-based) of the row under the per-rank header
  awk -v c="$2" 'f { print $c; exit } /attention +dense MLP/ { f = 1 }' <<<"$1"
}
tp8=$("$BIN" memory-plan --preset full-width --num-layers 61 --tp 8 --context-length 8192)
echo "$tp8"
all_gb=$(sed -n 's/^weights of all ranks: .* GiB (\([0-9.]*\) GB).*/\1/p' <<<"$tp8")
python3 -c "import sys; g = float(sys.argv[1]); sys.exit(0 if 680 < g < 720 else 1)" "$all_gb" ||
  fail "tp8: all ranks' weights $all_gb GB, expected ~700"
grep -q "KV cache: 101504 bytes per token" <<<"$tp8" || fail "tp8: KV bytes per token"
dp8=$("$BIN" memory-plan --preset full-width --num-layers 61 --tp 8 --dp 8 --enable-dp-attention --ep 8 --context-length 8192)
echo "$dp8"
python3 - "$(field "$tp8" 1)" "$(field "$dp8" 1)" "$(field "$tp8" 3)" "$(field "$dp8" 3)" "$(field "$tp8" 6)" \
  "$(field "$dp8" 6)" <<'PY' || fail "tp8 / dp8 per-rank parts"
import sys
att_tp, att_dp, ex_tp, ex_dp, emb_tp, emb_dp = map(float, sys.argv[1:])
assert 2.5 < att_tp < 3.5 and 11 < att_dp < 12, (att_tp, att_dp)       # replicated q_a/kv_a/indexer vs whole
assert 75 < ex_tp < 77 and abs(ex_tp - ex_dp) < 0.1, (ex_tp, ex_dp)     # 1/8 of every expert = 32 whole experts
assert 0.4 < emb_tp < 0.5 and 3.4 < emb_dp < 3.5, (emb_tp, emb_dp)      # vocabulary split 8 ways vs whole
PY
grep -q "KV pool per DP group" <<<"$dp8" || fail "dp8: no per-group pool"
rc=0
small=$("$BIN" memory-plan --preset full-width --num-layers 61 --tp 4 --gpu-memory-gib 139 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "DOES NOT FIT" <<<"$small" || fail "tp4 on 139 GiB GPUs must not fit: rc $rc, $small"
"$BIN" memory-plan --preset full-width --num-layers 61 --tp 8 --speculative-algorithm EAGLE | grep -q "+ MTP, bf16" ||
  fail "with MTP the KV counts the MTP layer"
# make-model --config-only writes config.json alone, and its plan is the preset's.
cfg=$(mktemp -d); trap 'rm -rf "$cfg"' EXIT
"$BIN" make-model --preset full-width --num-layers 61 --config-only --out "$cfg/m" >/dev/null 2>&1
[ "$(ls "$cfg/m")" = config.json ] || fail "--config-only wrote $(ls "$cfg/m")"
from_dir=$("$BIN" memory-plan --model-path "$cfg/m" --tp 8 --context-length 8192 | tail -n +2)
[ "$from_dir" = "$(tail -n +2 <<<"$tp8")" ] || fail "the plan of the config-only directory differs from the preset's"
echo ok
