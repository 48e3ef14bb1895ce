#!/usr/bin/env bash
# Tool calls under their schemas on the e2e model (random weights: only the grammar makes a call
# parse): with --tool-call-parser deepseekv32 and tool_choice "required" or a named function, every
# choice that ends is a tool call (finish_reason tool_calls) to an allowed tool whose arguments
# validate against its `parameters`, streaming or not, thinking on or off (with thinking on the
# grammar starts after </think>: a random model seldom writes it, so those choices mostly end by
# max_tokens; any that ends must be valid). With tool_choice "auto" and a strict tool the content
# is free and any call valid. A strict tool with an unsupported keyword is a 400.
# usage: test_tool_grammar.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
command -v curl >/dev/null || skip "curl missing"
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT

start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --served-model-name e2e-model \
  --reasoning-parser deepseek-v3 --tool-call-parser deepseekv32 --page-size 16 --max-total-tokens 16384 --threads 1

# request.py THINKING STREAM CHOICE N MAX_TOKENS -> the body; check.py RESPONSE_FILE STREAM -> "ended cut"
cat >"$TMP/request.py" <<'PY'
import json, sys
thinking, stream, choice, n, max_tokens = sys.argv[1] == "true", sys.argv[2] == "true", sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
tools = [
  {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
      "days": {"type": "integer", "minimum": 1, "maximum": 7}, "hourly": {"type": "boolean"}},
    "required": ["city", "days"], "additionalProperties": False}}},
  {"type": "function", "function": {"name": "set_alarm", "strict": True, "parameters": {
    "type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23},
      "label": {"type": "string", "minLength": 1, "maxLength": 6}, "days": {"type": "array", "items": {"enum": ["mon", "tue"]}, "maxItems": 2}},
    "required": ["hour"], "additionalProperties": False}}}]
body = {"model": "e2e-model", "messages": [{"role": "user", "content": "weather in Oslo, then wake me"}], "tools": tools,
        "n": n, "temperature": 1.0, "seed": 11, "max_tokens": max_tokens, "stream": stream,
        "chat_template_kwargs": {"thinking": thinking},
        "tool_choice": choice if choice in ("required", "auto") else {"type": "function", "function": {"name": choice}}}
print(json.dumps(body))
PY
cat >"$TMP/check.py" <<'PY'
import json, sys
text, stream, choice = open(sys.argv[1]).read(), sys.argv[2] == "true", sys.argv[3]
allowed = {"get_weather", "set_alarm"} if choice in ("required", "auto") else {choice}

def valid(name, a):
    if not isinstance(a, dict): return False
    if name == "get_weather":
        ok = set(a) <= {"city", "unit", "days", "hourly"} and {"city", "days"} <= set(a)
        ok = ok and isinstance(a["city"], str) and len(a["city"]) <= 8
        ok = ok and type(a["days"]) is int and 1 <= a["days"] <= 7
        ok = ok and a.get("unit", "celsius") in ("celsius", "fahrenheit") and type(a.get("hourly", True)) is bool
        return ok
    ok = set(a) <= {"hour", "label", "days"} and "hour" in a and type(a["hour"]) is int and 0 <= a["hour"] <= 23
    ok = ok and (not "label" in a or (isinstance(a["label"], str) and 1 <= len(a["label"]) <= 6))
    return ok and (not "days" in a or (isinstance(a["days"], list) and len(a["days"]) <= 2 and all(d in ("mon", "tue") for d in a["days"])))

choices = {}  # index -> (finish_reason, content, {call index: [name, arguments text]})
if stream:
    for line in text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]": continue
        for c in json.loads(line[6:]).get("choices", []):
            fr, content, calls = choices.get(c["index"], (None, "", {}))
            d = c.get("delta", {})
            content += d.get("content") or ""
            for tc in d.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], ["", ""])
                slot[0] += tc.get("function", {}).get("name") or ""
                slot[1] += tc.get("function", {}).get("arguments") or ""
            choices[c["index"]] = (c.get("finish_reason") or fr, content, calls)
else:
    for c in json.loads(text)["choices"]:
        m = c["message"]
        calls = {i: [tc["function"]["name"], tc["function"]["arguments"]] for i, tc in enumerate(m.get("tool_calls") or [])}
        choices[c["index"]] = (c["finish_reason"], m.get("content") or "", calls)
ended = cut = 0
for i, (fr, content, calls) in sorted(choices.items()):
    if choice == "auto" and not calls:  # free text (a random model seldom opens a block)
        assert fr in ("stop", "length"), f"choice {i}: finish_reason {fr}"
        assert "function_calls>" not in content, f"choice {i}: content {content!r}"
        if fr == "length": cut += 1
        else: ended += 1
        continue
    if fr == "length":
        cut += 1
        continue
    assert fr == "tool_calls", f"choice {i}: finish_reason {fr}, content {content!r}"
    assert calls and not content.strip(), f"choice {i}: calls {calls}, content {content!r}"
    for name, args in calls.values():
        assert name in allowed, f"choice {i}: tool {name}"
        assert valid(name, json.loads(args)), f"choice {i}: {name} {args}"
    ended += 1
print(ended, cut)
PY

post() {  # BODY -> response in $TMP/resp, fails unless 200
  local code
  code=$(curl -s -N -o "$TMP/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$1" \
    "$BASE_URL/v1/chat/completions")
  [ "$code" = 200 ] || fail "status $code: $(cat "$TMP/resp")"
}

total=0
for thinking in false true; do
  for stream in false true; do
    for choice in required set_alarm; do
      if [ $thinking = false ]; then n=2 max=500; else n=1 max=120; fi
      post "$(python3 "$TMP/request.py" $thinking $stream $choice $n $max)"
      read -r ended cut < <(python3 "$TMP/check.py" "$TMP/resp" $stream $choice) ||
        fail "thinking=$thinking stream=$stream choice=$choice: $(head -c 3000 "$TMP/resp")"
      echo "thinking=$thinking stream=$stream tool_choice=$choice: $ended choices ended in valid calls, $cut cut by max_tokens"
      total=$((total + ended))
    done
  done
done
[ "$total" -ge 3 ] || fail "too few choices ended to check ($total)"

# tool_choice auto with a strict tool: the content is free; a call, if the model writes one, is
# valid (every choice is checked either way; the grammar is attached, which the unit tests check).
for stream in false true; do
  post "$(python3 "$TMP/request.py" false $stream auto 3 120)"
  read -r ended cut < <(python3 "$TMP/check.py" "$TMP/resp" $stream auto) ||
    fail "auto stream=$stream: $(head -c 3000 "$TMP/resp")"
  echo "tool_choice=auto (strict tool) stream=$stream: $ended choices ended, $cut cut by max_tokens"
done

# A strict tool whose schema the engine cannot hold: 400 naming the keyword.
body=$(python3 -c 'import json; print(json.dumps({"model": "e2e-model", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required",
  "tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {"type": "object",
    "properties": {"a": {"type": "string", "not": {"const": "b"}}}}}}]}))')
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$body" "$BASE_URL/v1/chat/completions")
[ "$code" = 400 ] && grep -q "'not'" "$TMP/body" || fail "strict tool with 'not': $code $(cat "$TMP/body")"
echo "tool-call grammar e2e: ok"
