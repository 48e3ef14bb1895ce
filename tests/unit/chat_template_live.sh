#!/usr/bin/env bash
# Live comparison: every request in tests/fixtures/chat/v31_cases rendered by real Jinja2
# (tools/reference/render_chat_template.py) and by `dsserve chat-template`, for each
# template; any difference fails. Exit 77 (ctest: skipped) when /usr/bin/python3 has no jinja2.
set -uo pipefail
DSSERVE=$1
ROOT=$2
PY=/usr/bin/python3
"$PY" -c "import jinja2" 2>/dev/null || { echo "python3-jinja2 not installed: skipped"; exit 77; }
F=$ROOT/tests/fixtures/chat
ORACLE=$ROOT/tools/reference/render_chat_template.py
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
for tpl in "$F/templates/tool_chat_template_deepseekv31.jinja" "$F/templates/tool_chat_template_deepseekv32.jinja" \
           "$F/checkpoints/v32exp/tokenizer_config.json"; do
  for req in "$F"/v31_cases/*.request.json; do
    n=$((n + 1))
    "$PY" "$ORACLE" --template "$tpl" --request "$req" > "$tmp/want" 2>/dev/null; want_rc=$?
    "$DSSERVE" chat-template --tokenizer "$F/checkpoints/v32exp" --chat-template "$tpl" --request "$req" \
        > "$tmp/got" 2> "$tmp/err"; got_rc=$?
    if [ $want_rc -ne 0 ]; then
      [ $got_rc -ne 0 ] || { echo "FAIL $(basename "$tpl") $(basename "$req"): Jinja2 raised, dsserve did not"; fail=1; }
    elif [ $got_rc -ne 0 ] || ! cmp -s "$tmp/want" "$tmp/got"; then
      echo "FAIL $(basename "$tpl") $(basename "$req"): prompts differ"; cat "$tmp/err"; fail=1
    fi
  done
done
echo "$n renderings compared"
exit $fail
