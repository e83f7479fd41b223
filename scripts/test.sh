#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs the whole suite.
# Unit and direct tests run anywhere; namespaced tests need root and skip with a reason without.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
