#!/usr/bin/env bash
# Retraction under a tiny KV budget: 32 concurrent requests through the SDK all complete.
# usage: test_retraction.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
need_node_sdk
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --page-size 16 --max-total-tokens 256 \
  --max-running-requests 32 --threads 1
BASE_URL=$BASE_URL NPM_DIR=$NPM node "$(dirname "$0")/retraction.mjs" || fail "retraction test failed"
stop_server
