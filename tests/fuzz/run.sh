#!/usr/bin/env bash
# Runs every fuzzer (or the ones named) for SECONDS each (default 600), one at a time, on a
# persistent working corpus build-fuzz/fuzz-corpus/<name> seeded from tests/fuzz/corpus/<name>
# and tests/fuzz/regressions/<name>. A crash is saved to build-fuzz/fuzz-crashes/<name>/ and the
# fuzzer restarts until its time is used up. Prints per target: runs executed, corpus size,
# crashes found, and the wall and CPU seconds spent. Builds the fuzzers first (build_fuzz.sh).
# Usage: bash tests/fuzz/run.sh [SECONDS] [name...]
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
shift || true
WEFT_REQUIRE_FUZZ=1 bash scripts/build_fuzz.sh -j"$(nproc)" >/dev/null || exit 1
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for b in build-fuzz/tests/fuzz/fuzz_*; do names+=("${b##*/fuzz_}"); done
fi
# CPU seconds (user + system) used by this shell's finished children so far, into $CPU (`times`
# must run in this shell, not in a $(...) subshell).
times_file=$(mktemp)
trap 'rm -f "$times_file"' EXIT
child_cpu() {
  times >"$times_file"
  CPU=$(tail -n 1 "$times_file" |
    awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%d", t }')
}
printf "%-16s %8s %8s %10s %8s %8s\n" target seconds cpu_s runs corpus crashes
total_crashes=0
for name in "${names[@]}"; do
  bin=build-fuzz/tests/fuzz/fuzz_$name
  corpus=build-fuzz/fuzz-corpus/$name crashes=build-fuzz/fuzz-crashes/$name
  mkdir -p "$corpus" "$crashes"
  seeds=()
  for d in tests/fuzz/corpus/$name tests/fuzz/regressions/$name; do [ -d "$d" ] && seeds+=("$d"); done
  child_cpu
  runs=0 found=0 left=$seconds start=$SECONDS cpu_start=$CPU
  while [ "$left" -gt 0 ]; do
    log=$(mktemp)
    "$bin" -max_total_time="$left" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
      -close_fd_mask=3 -artifact_prefix="$crashes/" "$corpus" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    runs=$((runs + ${n:-0}))
    if [ "$rc" != 0 ]; then
      found=$((found + 1))
      echo "== $name: crash (exit $rc), log: $crashes/log.$found" >&2
      cp "$log" "$crashes/log.$found"
    fi
    rm -f "$log"
    left=$((seconds - (SECONDS - start)))
    [ "$rc" = 0 ] && break
  done
  total_crashes=$((total_crashes + found))
  child_cpu
  printf "%-16s %8s %8s %10s %8s %8s\n" "$name" "$((SECONDS - start))" \
    "$((CPU - cpu_start))" "$runs" \
    "$(find "$corpus" -type f | wc -l)" "$found"
done
[ "$total_crashes" = 0 ]
