#!/usr/bin/env bash
# The official OpenAI Node SDK (npm `openai`) against `dsserve serve` on the e2e model.
# usage: test_openai_sdk.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
need_node_sdk
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --served-model-name e2e-model \
  --reasoning-parser deepseek-v3 --tool-call-parser deepseekv32 --api-key sk-e2e --page-size 16 \
  --max-total-tokens 8192 --threads 1
BASE_URL=$BASE_URL API_KEY=sk-e2e MODEL_NAME=e2e-model NPM_DIR=$NPM \
  node --test "$(dirname "$0")/openai_sdk.test.mjs" || fail "SDK tests failed"
# One file after the other: the first checks the server's page counts after an abort.
BASE_URL=$BASE_URL API_KEY=sk-e2e MODEL_NAME=e2e-model NPM_DIR=$NPM \
  node --test "$(dirname "$0")/openai_sdk_responses.test.mjs" || fail "SDK Responses API / thinking tests failed"
grep -q "client disconnected" "$TMP/server.log" || fail "the aborted stream was not logged as a disconnect"
stop_server
echo ok
