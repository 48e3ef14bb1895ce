#!/usr/bin/env bash
# Run HERE before a device call that builds dsserve on the GPU machine: its image (Ubuntu 24.04)
# has every dependency but PCRE2's and UCX's headers, so carry Debian's pcre2.h and ucp/uct/ucs/ucm headers
# plus pkg-config files that point at them (the libraries themselves, libpcre2-8.so.0 and UCX 1.16's
# libucp.so.0, are on that machine; device-env.sh writes ucx.pc there once it has found UCX's library
# folder). Result: .device-carry/deps,
# to name in the call's `carry`; on the device, `source scripts/device-env.sh` before building.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device-carry/deps
rm -rf "$out" && mkdir -p "$out/include" "$out/lib/pkgconfig"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libpcre2-dev libucx-dev >/dev/null 2>&1 &&
  for d in libpcre2-dev_*.deb libucx-dev_*.deb; do dpkg -x "$d" root; done)
cp "$tmp/root/usr/include/pcre2.h" "$out/include/"
# UCX's C API is versioned (ucp_init checks the header's API version against the library's, and newer
# libraries take older headers), so Debian's 1.13 headers build against the device's 1.16 runtime.
cp -r "$tmp/root/usr/include/"{ucp,uct,ucs,ucm} "$out/include/"
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
