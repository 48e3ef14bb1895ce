#!/usr/bin/env bash
# Run HERE before a device call that builds dsserve on the GPU machine: its image (Ubuntu 24.04)
# has every dependency but PCRE2's header, so carry Debian's pcre2.h plus a pkg-config file that
# points at it (the library itself, libpcre2-8.so.0, is on that machine). Result: .device-carry/deps,
# to name in the call's `carry`; on the device, `source scripts/device-env.sh` before building.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device-carry/deps
rm -rf "$out" && mkdir -p "$out/include" "$out/lib/pkgconfig"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libpcre2-dev >/dev/null 2>&1 && dpkg -x libpcre2-dev_*.deb root)
cp "$tmp/root/usr/include/pcre2.h" "$out/include/"
cat > "$out/lib/pkgconfig/libpcre2-8.pc" <<'PC'
prefix=${pcfiledir}/../..
includedir=${prefix}/include
Name: libpcre2-8
Description: PCRE2 header carried to the GPU machine; the library is the system's
Version: 10.42
Libs: -l:libpcre2-8.so.0
Cflags: -I${includedir}
PC
echo "prepared $out"
