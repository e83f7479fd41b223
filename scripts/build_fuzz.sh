#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) into ./build-fuzz with clang-14: every library
# instrumented for coverage plus ASan/UBSan (-DWEFT_FUZZ=ON), and only the aggregate target
# weft_fuzzers. The main build (gcc, ./build) is untouched.
# Without clang-14/libFuzzer: as root (CI) this fails; otherwise it prints why and exits 0, and
# the fuzz.* ctests skip (tests/fuzz/ctest_fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
command -v clang++-14 >/dev/null || missing="clang-14"
compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null ||
  missing="${missing:+$missing, }libfuzzer-14-dev"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] || [ "${WEFT_REQUIRE_FUZZ:-0}" = 1 ]; then
    echo "weft: cannot build the fuzzers: $missing not installed (bash scripts/deps.sh)" >&2
    exit 1
  fi
  echo "weft: skipping the fuzz build: $missing not installed (apt-get install clang-14 libfuzzer-14-dev)"
  exit 0
fi
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
# -O1 and line tables only: fast to compile, fast enough to fuzz, symbolized stacks.
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DWEFT_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_FLAGS_FUZZ="-O1 -gline-tables-only" \
  -DCMAKE_CXX_FLAGS_FUZZ="-O1 -gline-tables-only" "${launcher[@]}" >/dev/null
ninja -C build-fuzz "$@" weft_fuzzers
