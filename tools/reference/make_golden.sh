#!/usr/bin/env bash
# Regenerates the golden fixtures under tests/golden/.
#   step 1 (here):            tools/reference/make_golden.sh checkpoints
#   step 2 (GPU machine image, which has transformers 5.17 + torch):
#                             tools/reference/make_golden.sh references OUTDIR
#   then copy OUTDIR/<case>/* into tests/golden/<case>/ref/.
#   step 3 (GPU machine image): tools/reference/make_golden.sh fidelity OUTDIR
#                             the DeepSeek-numerics fixtures (deepseek_fp8_0.npy, deepseek_fp8_ulp1_0.npy,
#                             fidelity.json; docs/ACCURACY.md); copy OUTDIR/<case>/* into tests/golden/<case>/ref/.
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
  checkpoints)
    rm -rf tests/golden/tiny_v32_fp8 tests/golden/tiny_v3_bf16
    ./build/dsserve make-model --preset tiny --seed 1 --out tests/golden/tiny_v32_fp8
    ./build/dsserve make-model --preset tiny --seed 2 --dtype bf16 --override '{"model_type":"deepseek_v3"}' \
        --out tests/golden/tiny_v3_bf16 ;;
  references)
    out=${2:?output dir}
    for c in tiny_v32_fp8 tiny_v3_bf16; do
      python3 tools/reference/golden.py "tests/golden/$c" "$out/$c"
    done ;;
  fidelity)
    python3 tools/reference/fidelity.py tiny "${2:?output dir}" ;;
  *) echo "usage: $0 checkpoints | references OUTDIR | fidelity OUTDIR" >&2; exit 2 ;;
esac
