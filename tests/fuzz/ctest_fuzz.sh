#!/usr/bin/env bash
# The ctest fuzz.<name>: runs build-fuzz's fuzz_<name> for SECONDS on the seed corpus plus every
# regression input. New inputs go to a temporary directory (the tree's corpus is not changed).
# Exit: 0 clean, 1 crash (or missing fuzz build as root / WEFT_REQUIRE_FUZZ=1), 77 skipped.
# Usage: ctest_fuzz.sh BINARY NAME SECONDS
set -uo pipefail
bin=$1 name=$2 seconds=$3
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$bin" ]; then
  if [ "$(id -u)" = 0 ] || [ "${WEFT_REQUIRE_FUZZ:-0}" = 1 ]; then
    echo "FAIL: $bin is missing: build the fuzzers first (bash scripts/build_fuzz.sh;" \
      "scripts/test.sh does it), which needs clang-14 and libfuzzer-14-dev" >&2
    exit 1
  fi
  echo "SKIP: $bin is missing (no clang-14/libfuzzer-14-dev, or bash scripts/build_fuzz.sh not run)"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/weft-fuzz-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
dirs=()
for d in "$here/corpus/$name" "$here/regressions/$name"; do
  if [ -d "$d" ]; then dirs+=("$d"); fi
done
# -timeout: one input taking this long (under ASan, on a loaded CI machine) is a hang, a crash.
# -rss_limit_mb: a runaway allocation is a crash too.
"$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$work/corpus" "${dirs[@]}" >"$work/log" 2>&1
rc=$?
shopt -s nullglob
artifacts=("$work/artifacts"/*)
if [ "$rc" != 0 ] || [ ${#artifacts[@]} -gt 0 ]; then
  cat "$work/log"
  echo "FAIL: fuzz_$name found a crash (exit $rc). Reproduce with: $bin <input>; add the input" \
    "to tests/fuzz/regressions/$name/ with the fix. Inputs (base64):" >&2
  for a in "${artifacts[@]}"; do
    echo "== $(basename "$a")" >&2
    head -c 65536 "$a" | base64 >&2
  done
  exit 1
fi
grep -E "^(INFO: Seed|#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss)" "$work/log"
exit 0
