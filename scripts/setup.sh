#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies installed, dsserve built, the OpenAI-compatible server
# running on the embedded demo model (made on first use) at http://127.0.0.1:30000 until Ctrl-C.
# Extra arguments go to `dsserve serve` (e.g. --port 8000, --device cuda, --model-path DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
# With no arguments: the demo model, served under the name "demo".
[ $# -gt 0 ] || set -- --served-model-name demo
exec ./build/dsserve serve "$@"
