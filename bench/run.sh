#!/usr/bin/env bash
# The benchmark suite (bench/suite/suite.h): Weft (eBPF and iptables capture) against no mesh and
# against sidecar meshes (HAProxy per pod, mTLS; mode tcp and mode http), modes interleaved in one
# run, on the scenarios seed (TeaStore-like shop, users x 5 rps), istio (1 KiB echo at 1,000 rps,
# 4 and 64 connections, HTTP/1.1 and gRPC over h2c, Weft L4 and L7), throughput (iperf3, 1 and 8 streams, same and cross node), churn (new connections
# per second until saturation), dataplane (ping-pong latency in µs, sequential connection rate and
# BPF program run time per capture mode) and scale (ztunnel/agent memory vs pods and idle
# connections).
# Writes bench/results/<UTC date-time>/{results.json,report.md,*.png} and prints the report.
#
#   sudo bash bench/run.sh            # full, ~45 minutes
#   sudo bash bench/run.sh --quick    # a subset with shorter steps, ~10 minutes
#   sudo bash bench/run.sh --help     # every flag of weft-bench-suite
#
# The control plane at scale is bench/cpscale.sh.
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

targets=(weft-bench-suite weftctl weftd ztunnel weft-agent weft-teashop weft-loadgen weft-h2echo)
if [[ -n "${BUILD_DIR:-}" ]]; then
  build="$(realpath -m "$BUILD_DIR")"
  echo "bench/run.sh: building ${targets[*]} in $build" >&2
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  ninja -C "$build" "${targets[@]}" >&2
else
  build="$PWD/build"
  echo "bench/run.sh: building ${targets[*]} with scripts/build.sh" >&2
  scripts/build.sh "${targets[@]}" >&2
fi

out="$repo/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)"
# The command as typed and the git revision (marked when the tree has uncommitted changes), for
# the report.
invocation="bash bench/run.sh"
for a in "$@"; do invocation+=" $(printf '%q' "$a")"; done
export WEFT_BENCH_INVOCATION="$invocation"
if rev="$(git rev-parse --short HEAD 2>/dev/null)"; then
  git diff --quiet HEAD 2>/dev/null || rev+=" (with uncommitted changes)"
  export WEFT_BENCH_REVISION="$rev"
fi
# exec: SIGINT/SIGTERM go straight to weft-bench-suite, which tears its meshes down.
exec "$build/bench/suite/weft-bench-suite" --out "$out" "$@"
