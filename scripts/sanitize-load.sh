#!/usr/bin/env bash
# The server under AddressSanitizer + UBSan + LeakSanitizer: builds dsserve and fake_serve into
# build-asan and runs the server e2e load test there (tests/e2e/server/test_load.sh: 256 streaming
# clients with random disconnects on the server layer over the fake engine, then 64 on the real
# `dsserve serve`), the router's e2e test (tests/e2e/server/test_router.sh) and the PD one (test_pd.sh), each ending in a
# SIGTERM shutdown that must exit 0 — where LeakSanitizer reports anything not freed. Part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$PWD")}"
  GEN+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# -O1 -g1: line tables are all a sanitizer report needs; -O2 -g (variable tracking) made this build
# ~7x slower to compile on CI's two cores (weights_load.cpp alone: 266 s vs 38 s).
[ -f build-asan/CMakeCache.txt ] || cmake -S . -B build-asan "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DDSSERVE_SANITIZE=ON -DDSSERVE_CUDA=OFF >/dev/null
cmake --build build-asan -j "$(nproc)" --target dsserve fake_serve
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMP_WAIT_POLICY=passive
B="$PWD/build-asan"
bash tests/e2e/server/make_model.sh "$B/dsserve" "$PWD" "$B"
bash tests/e2e/server/test_load.sh "$B/dsserve" "$PWD" "$B" "$B/tests/e2e/server/fake_serve" 256
# `dsserve router` in front of two workers: 200 streams with hang-ups, dead workers, each router run
# ending in a SIGTERM that must exit 0 (leaks and UB reported by then).
bash tests/e2e/server/test_router.sh "$B/dsserve" "$PWD" "$B"
# Prefill/decode disaggregation: a prefill server, a decode server and the PD router (the KV over UCX),
# hang-ups, timeouts and killed servers; every process stopped by SIGTERM must exit 0.
bash tests/e2e/server/test_pd.sh "$B/dsserve" "$PWD" "$B"
