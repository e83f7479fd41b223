#!/usr/bin/env bash
# The sockmap relay's repeated-bytes loop (docs/fastpath.md, "An skb that repeats bytes"): runs
# the fast path's bulk test (32 MiB each way through an echo, explicit sockmap relay) N times and
# prints how many runs failed. With --dup PER_MILLE it runs inside a private network namespace
# (`unshare -n`, gone when the run ends) whose loopback delivers that share of the TCP segments
# with payload twice (bpf/relay_test_dup.bpf.c on tc egress), which turns the rare natural case
# (a spurious retransmission merged with the next segment) into a frequent one. Not part of
# ctest (minutes); the short regression test is weft_bpf_relay_test's
# RepeatedBytesAreCutOffNotRelayedTwice.
#
#   sudo bash tests/relay/repeats.sh [--build DIR] [--runs N] [--dup PER_MILLE] [--relay sockmap|splice]
#
# Measured (2-vCPU machine shared with other jobs): --runs 400, before the fix 2 failures (both
# one skb too long), after 0; --dup 20 --runs 30, before 6 failures, after 0; splice 0 of 30.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build="$src/build"
runs=100
dup=0
relay=Sockmap
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --dup) dup=$2; shift 2 ;;
    --relay) relay=${2^}; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) -ne 0 ]]; then
  echo "needs root (the sockmap relay loads BPF; --dup makes a network namespace)" >&2
  exit 2
fi
test_bin="$build/tests/integration/weft_fastpath_test"
[[ -x $test_bin ]] || { echo "no $test_bin: build weft_fastpath_test first" >&2; exit 2; }
filter="Relay/SameNodeFastPath.MovesTensOfMiBBothWaysIntactWithoutHbone/$relay"
log=$(mktemp /tmp/weft-relay-repeats.XXXXXX)
trap 'rm -f "$log" "${obj:-}"' EXIT

run=("$test_bin" "--gtest_filter=$filter" "--gtest_repeat=$runs")
if [[ $dup -gt 0 ]]; then
  obj=$(mktemp /tmp/weft-relay-dup.XXXXXX.o)
  multiarch=$(gcc -print-multiarch 2>/dev/null || true)
  clang -target bpf -O2 -g -Wall -Werror -I"$src/bpf" -I"$src/bpf/include" \
    ${multiarch:+-I/usr/include/$multiarch} -DWEFT_DUP_PER_MILLE="$dup" \
    -c "$src/bpf/relay_test_dup.bpf.c" -o "$obj"
  unshare -n bash -c '
    set -e
    ip link set lo up
    tc qdisc add dev lo clsact
    tc filter add dev lo egress bpf da obj "$0" sec tc
    exec "$@"' "$obj" "${run[@]}" >"$log" 2>&1 || true
else
  "${run[@]}" >"$log" 2>&1 || true
fi
passed=$(grep -c '^\[       OK \]' "$log" || true)
failed=$(grep -c "^\[  FAILED  \] $filter.* ms)" "$log" || true)
grep -a -A3 'Failure' "$log" | grep -a 'Which is' | sort | uniq -c || true
echo "$filter, dup ${dup}‰: $passed passed, $failed failed of $runs"
[[ $failed -eq 0 ]]
