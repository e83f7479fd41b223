#!/usr/bin/env bash
# ctest kernels.MatrixPieces: what of tests/kernels/run.sh can run without qemu.
#  1. table.py reads this machine's real `weftctl check` report: every feature column, and a
#     capture mode that agrees with the exit status (a format change in the probe's report
#     would otherwise turn the matrix table into "unreadable" rows).
#  2. table.py on made-up rows: passed/failed/skipped counted from ctest's JUnit XML, the
#     iptables fallback shown with the probe's reason, the same-node relay read from its
#     self-test's outcome, a row without results keeps its note, a
#     report whose exit status contradicts its decision is flagged, not trusted.
#  3. mkinitramfs.sh refuses values /weft.env could not hold and a kernel without modules.dep.
#   selftest.sh WEFTCTL
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
weftctl=${1:?usage: selftest.sh WEFTCTL}
tmp=$(mktemp -d /tmp/weft-kmatrix-selftest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
expect_line() { # FILE LINE
  grep -qxF -- "$2" "$1" || fail "expected line in $(basename "$1"): $2"$'\n'"got:"$'\n'"$(cat "$1")"
}

# 1. The real report.
"$weftctl" check >"$tmp/check.txt" 2>&1
rc=$?
if ! python3 "$here/table.py" --check "$tmp/check.txt" "$rc" >"$tmp/parsed.txt" 2>&1; then
  fail "table.py cannot read this machine's weftctl check (exit $rc): $(cat "$tmp/parsed.txt")"
else
  if [[ $rc -eq 0 ]]; then
    expect_line "$tmp/parsed.txt" "capture: eBPF"
  else
    grep -q "^capture: iptables (" "$tmp/parsed.txt" || fail "exit $rc but: $(cat "$tmp/parsed.txt")"
  fi
  for col in SOCKHASH sk_msg sk_skb sk_redirect_hash sk_lookup kTLS set_retval "local legs"; do
    grep -qE "^$col: (yes|no)$" "$tmp/parsed.txt" || fail "no $col in: $(cat "$tmp/parsed.txt")"
  done
  grep -qE "^same-node relay: (sockmap|splice)$" "$tmp/parsed.txt" ||
    fail "no same-node relay in: $(cat "$tmp/parsed.txt")"
fi

# 2. Made-up rows in the probe's report format (agent/probe.cc ProbeReport::Format).
report() { # DECISION CGROUP_STATUS SK_MSG_STATUS
  printf 'Weft kernel check (Linux 9.9.9-test)\n'
  printf '  %-20s%-52s %s\n' "$2" "cgroup v2 mount" "x" "ok" "map type SOCKHASH" "available" \
    "$3" "program type sk_msg" "x" "ok" "program type sk_skb" "loads" \
    "ok" "helper bpf_sk_redirect_hash in sk_skb" "available" \
    "ok" "program type sk_lookup" "loads" "missing (optional)" 'kTLS (TCP_ULP "tls")' "x"
  printf 'Decision: %s\n' "$1"
}
junit() { # PASSED FAILED SKIPPED [RELAY_SELF_TEST_STATUS]
  echo '<?xml version="1.0" encoding="UTF-8"?><testsuite name="(empty)">'
  case "${4:-}" in
    run) echo '<testcase name="SameNodeRelay.SelfTestPasses" status="run"/>' ;;
    fail) echo '<testcase name="SameNodeRelay.SelfTestPasses" status="fail"><failure message="Failed"/></testcase>' ;;
  esac
  for ((i = 0; i < $1; i++)); do echo "<testcase name=\"P.t$i\" status=\"run\"/>"; done
  for ((i = 0; i < $2; i++)); do
    echo "<testcase name=\"F.t$i\" status=\"fail\"><failure message=\"Failed\"/></testcase>"
  done
  for ((i = 0; i < $3; i++)); do
    echo "<testcase name=\"S.t$i\" status=\"notrun\"><skipped message=\"SKIP_REGULAR_EXPRESSION_MATCHED\"/></testcase>"
  done
  echo '</testsuite>'
}
mkdir -p "$tmp"/{a,b,c,d}
echo 9.9.9-a >"$tmp/a/kernel"
report "eBPF capture: every required feature is present" ok "missing (optional)" >"$tmp/a/check.txt"
echo 0 >"$tmp/a/check.rc"
junit 2 1 2 run >"$tmp/a/junit.xml"
printf 'label=a\nseconds=75\n' >"$tmp/a/row.env"
echo 9.9.9-b >"$tmp/b/kernel"
report "iptables capture (in-pod REDIRECT rules): eBPF needs cgroup v2 mount" MISSING ok \
  >"$tmp/b/check.txt"
echo 1 >"$tmp/b/check.rc"
junit 4 0 0 fail >"$tmp/b/junit.xml"
printf 'label=b\nseconds=600\n' >"$tmp/b/row.env"
mkdir -p "$tmp/e"
echo 9.9.9-e >"$tmp/e/kernel"
{
  report "eBPF capture: every required feature is present" ok ok
  echo "Same-node relay: splice (the sockmap relay's self-test failed: x)"
} >"$tmp/e/check.txt"
echo 0 >"$tmp/e/check.rc"
junit 1 0 0 run >"$tmp/e/junit.xml"
printf 'label=c\nkernel=5.4\nnote=not available from apt\n' >"$tmp/c/row.env"
echo 9.9.9-d >"$tmp/d/kernel"
report "eBPF capture: every required feature is present" ok ok >"$tmp/d/check.txt"
echo 1 >"$tmp/d/check.rc"
printf 'label=d\n' >"$tmp/d/row.env"
python3 "$here/table.py" "$tmp"/{a,b,c,d,e} >"$tmp/table.md" || fail "table.py exit $?"
expect_line "$tmp/table.md" "| a | 9.9.9-a | eBPF | yes | **no** | yes | yes | yes | **no** | – | – | sockmap | 3 / 1 / 2 | 1:15 |"
expect_line "$tmp/table.md" "| b | 9.9.9-b | iptables (no cgroup v2 mount) | yes | yes | yes | yes | yes | **no** | – | – | splice (self-test failed) | 4 / 1 / 0 | 10:00 |"
expect_line "$tmp/table.md" "| c | 5.4 | not available from apt | – | – | – | – | – | – | – | – | – | – | – |"
expect_line "$tmp/table.md" "| e | 9.9.9-e | eBPF | yes | yes | yes | yes | yes | **no** | – | – | splice | 2 / 0 / 0 | – |"
expect_line "$tmp/table.md" "a failed: F.t0"
expect_line "$tmp/table.md" "b failed: SameNodeRelay.SelfTestPasses"
grep -q "^| d | 9.9.9-d | unreadable check.txt: exit status 1 disagrees" "$tmp/table.md" ||
  fail "a report contradicting its exit status was trusted: $(grep '^| d' "$tmp/table.md")"

# 3. mkinitramfs.sh argument checks.
out=$(bash "$here/mkinitramfs.sh" --modules-root "$tmp" --release x --out "$tmp/i" \
  --env "WEFT_TESTS=a'b" 2>&1)
[[ $? -eq 2 && "$out" == *"without single quotes"* ]] || fail "a quote in --env was accepted: $out"
mkdir -p "$tmp/k/lib/modules/1.2.3"
out=$(bash "$here/mkinitramfs.sh" --modules-root "$tmp/k" --release 1.2.3 --out "$tmp/i" 2>&1)
[[ $? -eq 1 && "$out" == *"has no modules.dep"* ]] || fail "no modules.dep was accepted: $out"
[[ ! -e "$tmp/i" ]] || fail "an initramfs was written despite the error"

if [[ $failures -gt 0 ]]; then
  echo "kernels selftest: $failures failure(s)"
  exit 1
fi
echo "kernels selftest: ok"
