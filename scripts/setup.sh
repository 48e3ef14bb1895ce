#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, dsserve built, the demo model answering.
# (The HTTP server lands with issue 4; until then this runs `dsserve generate` on the demo model.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
DEMO=$(scripts/make-demo.sh)
./build/dsserve generate --model-path "$DEMO" --prompt "${1:-Hello! Who are you?}" --max-new-tokens 32
