#!/usr/bin/env bash
# Builds and runs weft-cp-bench (weftd at scale: generated manifests for 10,000 pods, 1,000
# services, 100 nodes, 500 policies by default; the real weftd; one config stream per node),
# writing bench/results/<UTC date-time>-cpscale/{results.json,report.md} and printing the report.
#
#   bash bench/cpscale.sh                       # the issue's size, ~1-2 minutes
#   bash bench/cpscale.sh --pods 2000 --nodes 20  # any weft-cp-bench flag
#   bash bench/cpscale.sh --help
#
# No root needed (everything is on loopback). Environment: BUILD_DIR=<dir> builds and runs from
# that build directory (default ./build); BUILD_TYPE is passed to cmake (RelWithDebInfo).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

build="$(realpath -m "${BUILD_DIR:-build}")"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
echo "bench/cpscale.sh: building weft-cp-bench and weftd in $build" >&2
ninja -C "$build" weft-cp-bench weftd >&2
exec "$build/bench/cpscale/weft-cp-bench" --weftd "$build/controlplane/weftd/weftd" "$@"
