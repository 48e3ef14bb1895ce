# Sourced on the GPU machine (device tool) before scripts/build.sh: finds the carried PCRE2 and UCX headers
# (scripts/device-prepare.sh) and the machine's own UCX libraries (runtime only there).
export PKG_CONFIG_PATH="$PWD/.device-carry/deps/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# ucx.pc for the carried headers and the machine's libucp.so.0 (wherever its image put it); without
# one, dsserve builds without UCX and refuses --disaggregation-mode with a clear error.
ucx_lib=$(ldconfig -p 2>/dev/null | awk '/libucp\.so\.0 / {print $NF; exit}')
[ -n "$ucx_lib" ] || ucx_lib=$(find /usr /opt -name 'libucp.so.0' 2>/dev/null | head -1)
if [ -n "$ucx_lib" ] && [ -d "$PWD/.device-carry/deps/include/ucp" ]; then
  ucx_dir=$(dirname "$ucx_lib")
  cat >"$PWD/.device-carry/deps/lib/pkgconfig/ucx.pc" <<PC
prefix=$PWD/.device-carry/deps
includedir=\${prefix}/include
Name: ucx
Description: UCX headers carried to the GPU machine; the libraries are the system's ($ucx_dir)
Version: 1.16
Libs: -L$ucx_dir -Wl,-rpath,$ucx_dir -l:libucp.so.0 -l:libuct.so.0 -l:libucs.so.0
Cflags: -I\${includedir}
PC
fi
