#!/usr/bin/env bash
# Builds and runs weft-bench (the data-plane benchmark: bare vs iptables capture vs eBPF capture,
# same-node and cross-node pairs, on namespace testbeds), writing
# bench/results/<UTC date-time>/{results.json,report.md} and printing the report.
#
#   sudo bash bench/dataplane.sh            # 3 interleaved rounds, ~5 minutes
#   sudo bash bench/dataplane.sh --quick    # 3 short rounds, ~2-3 minutes
#   sudo bash bench/dataplane.sh --help     # every flag of weft-bench
#
# Environment: BUILD_DIR=<dir> builds and runs from that build directory with cmake + ninja
# (default: scripts/build.sh, i.e. ./build); BUILD_TYPE is passed to cmake (RelWithDebInfo).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

for a in "$@"; do
  if [[ "$a" == "--help" || "$a" == "-h" ]]; then
    echo "usage: bash bench/dataplane.sh [weft-bench flags]   (env: BUILD_DIR, BUILD_TYPE)"
    echo
  fi
done
if [[ $EUID -ne 0 ]]; then
  echo "bench/dataplane.sh: needs root (network namespaces, cgroups, BPF, iptables inside them): sudo bash bench/dataplane.sh" >&2
  exit 1
fi

targets=(weft-bench ztunnel weft-agent)
if [[ -n "${BUILD_DIR:-}" ]]; then
  build="$(realpath -m "$BUILD_DIR")"
  echo "bench/dataplane.sh: building ${targets[*]} in $build" >&2
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  ninja -C "$build" "${targets[@]}" >&2
elif [[ -x scripts/build.sh ]]; then
  build="$repo/build"
  echo "bench/dataplane.sh: building ${targets[*]} with scripts/build.sh" >&2
  scripts/build.sh "${targets[@]}" >&2
else
  build="$repo/build"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  ninja -C "$build" "${targets[@]}" >&2
fi

out="$repo/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)"
invocation="bash bench/dataplane.sh"
for a in "$@"; do invocation+=" $(printf '%q' "$a")"; done
export WEFT_BENCH_INVOCATION="$invocation"
if rev="$(git rev-parse --short HEAD 2>/dev/null)"; then
  git diff --quiet HEAD 2>/dev/null || rev+=" (with uncommitted changes)"
  export WEFT_BENCH_REVISION="$rev"
fi
# exec: SIGINT/SIGTERM go straight to weft-bench, which stops and removes its namespaces.
exec "$build/bench/weft-bench" --out "$out" "$@"
