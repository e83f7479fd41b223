#!/bin/bash
# One row of the kernel matrix, on the running kernel (in a guest, or the host's own row):
# `weftctl check` (the probe's report and decision) and the chosen BPF and capture tests with
# ctest, into OUT: kernel, check.txt + check.rc, ctest.txt, junit.xml, suite.env (timings).
#   suite.sh --build BUILD_DIR --out OUT_DIR --tests CTEST_REGEX
set -uo pipefail

build="" out="" tests=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --tests) tests=${2:?}; shift 2 ;;
    *) echo "suite.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -n "$build" && -n "$out" && -n "$tests" ]] || {
  echo "usage: suite.sh --build BUILD_DIR --out OUT_DIR --tests CTEST_REGEX" >&2
  exit 2
}
mkdir -p "$out"
start=$(date +%s)
uname -r >"$out/kernel"
echo "suite: weftctl check on Linux $(uname -r)"
"$build/cli/weftctl" check >"$out/check.txt" 2>&1
echo $? >"$out/check.rc"
tail -n 1 "$out/check.txt"
check_done=$(date +%s)

echo "suite: ctest -R '$tests'"
ctest --test-dir "$build" -R "$tests" --timeout 600 --output-on-failure \
  --output-junit "$out/junit.xml" >"$out/ctest.txt" 2>&1
rc=$?
grep -E "tests passed|tests failed|Total Test time" "$out/ctest.txt"
end=$(date +%s)
cat >"$out/suite.env" <<EOT
ctest_rc=$rc
check_seconds=$((check_done - start))
ctest_seconds=$((end - check_done))
EOT
sync
exit 0
