# Sourced by the GPU scripts that make and serve checkpoints (gpu-pd-check.sh, gpu-spec-check.sh,
# gpu-grammar-check.sh), with BIN (the dsserve binary) and LOG (the log folder) set.

# make_ckpt DIR ARGS...: `make-model --out DIR ARGS...` plus the tokenizer files from TOKENIZER_DIR
# (default .device-carry, what scripts/device-prepare.sh carries to the GPU machine).
make_ckpt() {
  local dir=$1
  shift
  "$BIN" make-model --out "$dir" "$@" >"$LOG/make-model.log" 2>&1 || { echo "make-model $* failed"; exit 1; }
  cp "${TOKENIZER_DIR:-.device-carry}/tokenizer.json" "${TOKENIZER_DIR:-.device-carry}/tokenizer_config.json" "$dir/"
}

# wait_ready LOG PID: until the server writing LOG says it is ready (or PID has died); sets URL.
wait_ready() {
  for _ in $(seq 1 1200); do grep -q "fired up and ready" "$1" && break; kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  grep -q "fired up and ready" "$1" || { echo "did not start: $1"; tail -5 "$1"; return 1; }
  URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$1" | head -1)
}
