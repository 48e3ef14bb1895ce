#!/usr/bin/env bash
# The Jinja interpreter against real Jinja2 on a corpus of real chat templates: every template in
# tests/fixtures/chat/{corpus,templates} and the V3.2-Exp tokenizer_config.json, over every request
# in tests/fixtures/chat/{corpus_cases,v31_cases}, rendered by tools/reference/render_chat_template.py
# (Jinja2 set up as transformers' apply_chat_template sets it up) and by `dsserve chat-template`.
# Byte-for-byte equal, or both refuse. Exit 77 (ctest: skipped) when /usr/bin/python3 has no jinja2.
set -uo pipefail
DSSERVE=$1
ROOT=$2
PY=/usr/bin/python3
"$PY" -c "import jinja2" 2>/dev/null || { echo "python3-jinja2 not installed: skipped"; exit 77; }
F=$ROOT/tests/fixtures/chat
ORACLE=$ROOT/tools/reference/render_chat_template.py
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; same=0; both_refused=0
reqs=("$F"/corpus_cases/*.request.json "$F"/v31_cases/*.request.json)
for tpl in "$F"/corpus/*.jinja "$F"/templates/*.jinja "$F/checkpoints/v32exp/tokenizer_config.json"; do
  # One Jinja2 interpreter renders every request of this template (a start per pair took most of the time).
  rm -rf "$tmp/want"; mkdir -p "$tmp/want"
  "$PY" "$ORACLE" --template "$tpl" --requests "${reqs[@]}" --out-dir "$tmp/want" || { echo "FAIL: the oracle crashed on $tpl"; fail=1; continue; }
  for k in "${!reqs[@]}"; do
    req=${reqs[$k]}
    "$DSSERVE" chat-template --tokenizer "$F/checkpoints/v32exp" --encoder v31 --chat-template "$tpl" --request "$req" \
        > "$tmp/got" 2> "$tmp/err"; got_rc=$?
    name="$(basename "$tpl") $(basename "$req" .request.json)"
    if [ -f "$tmp/want/$k.error" ]; then
      if [ $got_rc -ne 0 ]; then both_refused=$((both_refused + 1)); else
        echo "FAIL $name: Jinja2 raised ($(cat "$tmp/want/$k.error")), dsserve did not"; fail=1; fi
    elif [ ! -f "$tmp/want/$k.prompt" ]; then
      echo "FAIL $name: the oracle wrote nothing"; fail=1
    elif [ $got_rc -ne 0 ]; then
      echo "FAIL $name: dsserve refused: $(cat "$tmp/err")"; fail=1
    elif ! cmp -s "$tmp/want/$k.prompt" "$tmp/got"; then
      echo "FAIL $name: prompts differ"; diff <(cat -A "$tmp/want/$k.prompt") <(cat -A "$tmp/got") | head -6; fail=1
    else
      same=$((same + 1))
    fi
  done
done
echo "$same renderings identical to Jinja2, $both_refused refused by both"
[ $same -ge 200 ] || { echo "FAIL: too few renderings compared"; fail=1; }
exit $fail
