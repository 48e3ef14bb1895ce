# Every dependency comes from Debian's packages (see README.md, "Dependencies").
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED)            # CPU backend threading (libgomp, ships with g++)
find_package(nlohmann_json 3.10 REQUIRED) # JSON: config.json, safetensors headers, HTTP bodies
find_package(CLI11 REQUIRED)             # command line flags of every subcommand
find_package(fmt REQUIRED)               # formatting
find_package(spdlog REQUIRED)            # logging
find_package(Boost 1.74 REQUIRED)       # Asio + Beast (header-only): the benchmark's HTTP client
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)  # tokenizer pre-split regexes (Unicode + JIT)
if(DSSERVE_TESTS)
  find_package(GTest REQUIRED)
endif()
