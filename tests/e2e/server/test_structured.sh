#!/usr/bin/env bash
# Structured outputs on the e2e model (random weights: the grammar alone makes the output valid):
# every chat completion under a JSON schema that ends with "stop" parses and validates, also with
# thinking on (free reasoning, then the JSON); json_object, /generate with a regex; an output that
# cannot finish within max_tokens ends with "length"; a bad schema is a 400 naming the keyword.
# usage: test_structured.sh DSSERVE SOURCE_DIR BUILD_DIR
set -euo pipefail
BIN=$1 SRC=$2 BUILD=$3
source "$(dirname "$0")/common.sh"
need_tokenizer
command -v curl >/dev/null || skip "curl missing"
TMP=$(mktemp -d)
trap 'cleanup; rm -rf "$TMP"' EXIT

start_server "$TMP/server.log" --model-path "$MODEL" --encoder dsv32 --served-model-name e2e-model \
  --reasoning-parser deepseek-v3 --page-size 16 --max-total-tokens 16384 --threads 1

post() {  # PATH BODY -> body on stdout, fails unless 200
  local code
  code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$2" "$BASE_URL$1")
  [ "$code" = 200 ] || fail "POST $1: status $code: $(cat "$TMP/body")"
  cat "$TMP/body"
}

SCHEMA='{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":150},
 "tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3},"ok":{"type":"boolean"}},
 "required":["name","age","tags","ok"],"additionalProperties":false}'

# With thinking on, the grammar starts after </think>; a random model rarely writes that token, so
# these choices mostly end by max_tokens with free reasoning (the trigger itself is covered by
# tests/unit/test_runtime_grammar.cpp); any that does finish must validate.
# The checks of one chat response: n choices, each "stop" -> content is a valid document.
check_chat() {  # RESPONSE_JSON KIND(schema|object) -> prints "stopped lengthed"
  python3 - "$1" "$2" <<'PY'
import json, sys
resp, kind = json.loads(sys.argv[1]), sys.argv[2]
stopped = lengthed = 0
for ch in resp["choices"]:
    reason, content = ch["finish_reason"], ch["message"]["content"]
    if reason == "length":
        lengthed += 1
        continue
    assert reason == "stop", reason
    doc = json.loads(content)
    if kind == "object":
        assert isinstance(doc, dict), content
    else:
        assert set(doc) == {"name", "age", "tags", "ok"}, content
        assert isinstance(doc["name"], str) and len(doc["name"]) <= 12, content
        assert isinstance(doc["age"], int) and not isinstance(doc["age"], bool) and 0 <= doc["age"] <= 150, content
        assert isinstance(doc["tags"], list) and len(doc["tags"]) <= 3 and all(t in "abc" for t in doc["tags"]), content
        assert isinstance(doc["ok"], bool), content
    stopped += 1
print(stopped, lengthed)
PY
}

total=0
for thinking in false true; do
  body=$(python3 -c 'import json,sys; print(json.dumps({"model": "e2e-model", "messages": [{"role": "user", "content": "a person"}],
    "n": 4 if sys.argv[2] == "false" else 2, "temperature": 1.0, "seed": 7, "max_tokens": 1200 if sys.argv[2] == "false" else 150,
    "chat_template_kwargs": {"thinking": sys.argv[2] == "true"},
    "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": json.loads(sys.argv[1]), "strict": True}}}))' "$SCHEMA" $thinking)
  resp=$(post /v1/chat/completions "$body")
  read -r stopped lengthed < <(check_chat "$resp" schema) || fail "thinking=$thinking: an output does not validate: $resp"
  echo "json_schema thinking=$thinking: $stopped valid, $lengthed cut by max_tokens"
  total=$((total + stopped))
done
[ "$total" -ge 2 ] || fail "too few outputs finished to check ($total)"

resp=$(post /v1/chat/completions '{"model": "e2e-model", "messages": [{"role": "user", "content": "x"}], "n": 2, "seed": 3,
  "max_tokens": 800, "response_format": {"type": "json_object"}}')
check_chat "$resp" object >/dev/null || fail "json_object output is not an object: $resp"

# A grammar that cannot finish in 3 tokens: "length", never an invalid "stop".
resp=$(post /v1/chat/completions '{"model": "e2e-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
  "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object", "properties":
  {"a_long_property_name": {"type": "string"}}, "required": ["a_long_property_name"]}}}}')
[ "$(jget "$resp" 'j["choices"][0]["finish_reason"]')" = length ] || fail "short max_tokens: $resp"

# SGLang's native API with a regex.
resp=$(post /generate '{"text": "phone:", "sampling_params": {"regex": "\\(\\d{3}\\) \\d{3}-\\d{4}", "max_new_tokens": 40, "temperature": 1.0}}')
python3 -c 'import json,re,sys; j=json.loads(sys.argv[1]); assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", j["text"]), j' "$resp" \
  || fail "regex output: $resp"

# Bad schemas: 400 naming the keyword.
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary \
  '{"model": "e2e-model", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema",
   "json_schema": {"name": "p", "schema": {"type": "object", "patternProperties": {"a": {}}}}}}' "$BASE_URL/v1/chat/completions")
[ "$code" = 400 ] && grep -q "patternProperties" "$TMP/body" || fail "bad schema: $code $(cat "$TMP/body")"
echo "structured outputs e2e: ok"
