#!/usr/bin/env bash
# The benchmark suite (bench/suite/suite.h): Weft (eBPF and iptables capture) against no mesh and
# against a sidecar mesh (HAProxy per pod, mTLS), modes interleaved in one run, on the scenarios
# seed (TeaStore-like shop, users x 5 rps), istio (1 KiB echo at 1,000 rps, 4 and 64
# connections), throughput (iperf3, 1 and 8 streams, same and cross node), churn (new connections
# per second until saturation) and scale (ztunnel/agent memory vs pods and idle connections).
# Writes bench/results/<UTC date-time>/{results.json,report.md,*.png} and prints the report.
#
#   sudo bash bench/run.sh            # full, ~30 minutes
#   sudo bash bench/run.sh --quick    # a subset with shorter steps, under 10 minutes
#   sudo bash bench/run.sh --help     # every flag of weft-bench-suite
#
# The older data-plane microbenchmark (ping-pong latency, connection rate, BPF program run
# time) is bench/dataplane.sh; the control plane at scale is bench/cpscale.sh.
# Environment: BUILD_DIR=<dir> builds and runs from that build directory with cmake + ninja
# (default: scripts/build.sh, i.e. ./build); BUILD_TYPE is passed to cmake (RelWithDebInfo).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

for a in "$@"; do
  if [[ "$a" == "--help" || "$a" == "-h" ]]; then
    echo "usage: bash bench/run.sh [--quick] [weft-bench-suite flags]   (env: BUILD_DIR, BUILD_TYPE)"
    echo
  fi
done
if [[ $EUID -ne 0 ]]; then
  echo "bench/run.sh: needs root (network namespaces, cgroups, BPF, iptables inside them): sudo bash bench/run.sh" >&2
  exit 1
fi
for tool in iperf3 haproxy gnuplot; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench/run.sh: $tool is missing: bash scripts/deps.sh installs it" >&2
    exit 1
  fi
done

targets=(weft-bench-suite weftctl weftd ztunnel weft-agent weft-teashop weft-loadgen weft-bench)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
weft_bench_build bench/run.sh "${targets[@]}"

out="$repo/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)"
weft_bench_export_run_info bench/run.sh "$@"
# exec: SIGINT/SIGTERM go straight to weft-bench-suite, which tears its meshes down.
exec "$build/bench/suite/weft-bench-suite" --out "$out" "$@"
