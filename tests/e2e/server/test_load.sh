#!/usr/bin/env bash
# Load on loopback: CLIENTS concurrent streaming SDK clients with random disconnects, first against
# the server layer over the fake engine (fake_serve; leaks show up under ASan/LSan as a failed
# exit), then a smaller run against `dsserve serve` on the e2e model.
# usage: test_load.sh DSSERVE SOURCE_DIR BUILD_DIR FAKE_SERVE CLIENTS
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3 FAKE=$4 CLIENTS=$5
source "$(dirname "$0")/common.sh"
need_tokenizer
need_node_sdk
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT

"$FAKE" "$TOKDIR" 10 >"$TMP/fake.log" 2>&1 &  # a token every 10 ms: clients leave mid-stream
SERVER_PID=$!
SERVER_LOG=$TMP/fake.log
for _ in $(seq 1 100); do grep -q "serving on" "$TMP/fake.log" && break; sleep 0.1; done
BASE_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$TMP/fake.log" | head -1)
[ -n "$BASE_URL" ] || fail "fake_serve did not start"
BASE_URL=$BASE_URL NPM_DIR=$NPM CLIENTS=$CLIENTS MAX_TOKENS=32 node "$(dirname "$0")/load.mjs" || fail "load on the fake engine"
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[ $rc = 0 ] || fail "fake_serve exited with $rc (a sanitizer report?)"

start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --page-size 16 --max-total-tokens 8192 --threads 1
BASE_URL=$BASE_URL NPM_DIR=$NPM CLIENTS=$((CLIENTS / 4)) MAX_TOKENS=6 node "$(dirname "$0")/load.mjs" || fail "load on the engine"
grep -q "client disconnected" "$TMP/server.log" || fail "no client left mid-stream"
stop_server
