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
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
weft_bench_build bench/dataplane.sh "${targets[@]}"

out="$repo/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)"
weft_bench_export_run_info bench/dataplane.sh "$@"
# exec: SIGINT/SIGTERM go straight to weft-bench, which stops and removes its namespaces.
exec "$build/bench/weft-bench" --out "$out" "$@"
