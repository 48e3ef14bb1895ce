# Sourced on the GPU machine (device tool) before scripts/build.sh: finds the carried PCRE2 header.
export PKG_CONFIG_PATH="$PWD/.device-carry/deps/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
