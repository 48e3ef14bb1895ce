#!/usr/bin/env bash
# README.md's demo examples, run as written against the embedded demo model served as setup.sh serves
# it (no --model-path, --served-model-name demo): each must finish within seconds and succeed, and the
# demo's default context length must keep a request without max_tokens short (issue 23, point 1).
# The examples are the indented command lines between <!-- demo-examples --> and <!-- /demo-examples -->.
# usage: test_readme_examples.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT
export DSSERVE_DEMO_DIR="$BUILD/e2e_demo_model"  # made on first use, kept for later runs

mapfile -t EXAMPLES < <(sed -n '/<!-- demo-examples -->/,/<!-- \/demo-examples -->/p' "$SRC/README.md" |
  grep -E '^    (curl|build/dsserve) ' | sed 's/^    //')
[ ${#EXAMPLES[@]} -ge 3 ] || fail "expected at least 3 demo examples in README.md, found ${#EXAMPLES[@]}"

start_server "$TMP/server.log" --served-model-name demo --threads 2
PORT=${BASE_URL##*:}
models=$(curl -s "$BASE_URL/v1/models")
[ "$(jget "$models" 'j["data"][0]["max_model_len"]')" = 1024 ] || fail "demo context length: $models"
grep -q "demo model: context length 1024" "$SERVER_LOG" || fail "no context-length line in the banner"

n=0
for ex in "${EXAMPLES[@]}"; do
  cmd=${ex//localhost:30000/127.0.0.1:$PORT}
  cmd=${cmd//--port 30000/--port $PORT}
  cmd=${cmd//build\/dsserve/$BIN}
  n=$((n + 1))
  start=$(date +%s)
  out=$(cd "$TMP" && timeout 60 bash -c "$cmd" 2>&1) || fail "example $n did not finish in 60 s or failed: $ex
$out"
  took=$(($(date +%s) - start))
  echo "example $n (${took}s): $ex"
  case $ex in
    curl*)
      [[ $out != *'"error":{'* ]] || fail "example $n answered an error: $out"
      [[ $out == *'"finish_reason"'* || $out == *'"object":"response"'* || $out == *'"data"'* ]] ||
        fail "example $n: unexpected answer: $out" ;;
    *bench\ serving*)
      [[ $out == *"Serving Benchmark Result"* ]] || fail "example $n: no report: $out"
      ! grep -q "^Failed requests:" <<<"$out" || fail "example $n: failed requests: $out"
      want=$(grep -oE -- '--num-prompts [0-9]+' <<<"$ex" | grep -oE '[0-9]+')
      grep -Eq "^Successful requests:\s+$want\b" <<<"$out" || fail "example $n: not all $want requests succeeded: $out" ;;
  esac
done
stop_server
echo "README demo examples: $n ok"
