#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs the whole suite.
# Unit and direct tests run anywhere; namespaced tests need root and skip with a reason without.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
# The libFuzzer targets (clang-14, ./build-fuzz); the fuzz.* ctests below run each briefly.
bash scripts/build_fuzz.sh
cd build
# As root (CI) the kernel is expected to have what the eBPF tests need: a missing feature
# fails those tests instead of skipping them (common/testing/kernel_features.h).
if [ "$(id -u)" = 0 ]; then export WEFT_REQUIRE_KERNEL_FEATURES="${WEFT_REQUIRE_KERNEL_FEATURES:-1}"; fi
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
