#!/usr/bin/env bash
# The kernel matrix (docs/kernels.md): boots Debian 12's own kernels under qemu (TCG: no KVM
# needed) with the host's root file system shared read-only over 9p, runs `weftctl check` and
# the BPF and capture tests inside each, then the same on the host's own kernel, and prints one
# table: kernel, capture mode the probe chose, sockmap/sk_lookup features, tests
# passed/failed/skipped, wall time. Not part of .ci/run (20 minutes on a loaded 2-vCPU machine;
# one VM at a time).
#
#   sudo bash tests/kernels/run.sh [--build DIR] [--results DIR] [--rows "host 6.1 6.12 6.1-cgroup1"]
#                                  [--tests CTEST_REGEX] [--memory 2G] [--timeout SECONDS]
#
# --rows: "host" is the host's own kernel (no VM); a Debian kernel series ("6.1") boots that
# kernel, fetched with apt (linux-image-SERIES-amd64, or linux-image-amd64 when that is the
# series) and unpacked under /var/cache/weft-kernels (not installed: the host's /boot and
# initramfs hooks stay untouched); "SERIES-cgroup1" boots it with only cgroup v1 hierarchies
# mounted, where the probe must fall back to iptables. Results (console logs, check.txt, ctest
# output, junit.xml, table.md) go to --results, default /tmp/weft-kernels/<UTC time>.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build="$src/build"
results="/tmp/weft-kernels/$(date -u +%Y%m%dT%H%M%SZ)"
rows_wanted="host 6.1 6.12 6.1-cgroup1"
tests='ProbeTest|SkLookupTest|ConnectTest|ReasonNameTest|NodeCaptureTest|PinnedMapsTest|CaptureTest|CaptureOptionsTest|AgentEbpfTest|NamespacedFastPath|SameNodeRelay\.(SelfTestPasses|SlowReaderIsBoundedByPause)|SameNodeFastPath\.(MovesTensOfMiB|HalfClose|ResetIsPropagated)'
memory=2G timeout=1200
cache=/var/cache/weft-kernels

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$(cd "${2:?}" && pwd); shift 2 ;;
    --results) results=${2:?}; shift 2 ;;
    --rows) rows_wanted=${2:?}; shift 2 ;;
    --tests) tests=${2:?}; shift 2 ;;
    --memory) memory=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "run.sh: run as root (BPF tests, apt, 9p export of /)" >&2; exit 2; }
for b in cli/weftctl agent/weft_agent_probe_test bpf/weft_bpf_test; do
  [[ -x "$build/$b" ]] || {
    echo "run.sh: $build/$b is not built; build the tests first, e.g." >&2
    echo "  ninja -C $build weftctl weft_agent_probe_test weft_agent_ebpf_test weft_bpf_test weft_bpf_relay_test \\" >&2
    echo "    weft_bpf_node_test weft_bpf_pinned_test weft_zt_capture_test weft_fastpath_test weft_fastpath_namespaced_test" >&2
    exit 2
  }
done

t0=$(date +%s)
mkdir -p "$results" "$cache/debs"

# Host tools, idempotently.
need=()
for p in qemu-system-x86 busybox-static kmod cpio xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [[ ${#need[@]} -gt 0 ]]; then
  echo "run.sh: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The versioned linux-image package of a Debian series ("6.1" -> linux-image-6.1.0-N-amd64),
# through the series' meta-package; empty when apt has none.
resolve_kernel() {
  local series=$1 meta pkg
  for meta in "linux-image-$series-amd64" linux-image-amd64; do
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
    if [[ "$pkg" == linux-image-"$series"[.-]* ]]; then
      echo "$pkg"
      return
    fi
  done
}

# Unpacks PACKAGE under $cache/root-PACKAGE (depmod run); prints that directory.
fetch_kernel() {
  local pkg=$1 root="$cache/root-$1" rel
  if ! compgen -G "$root/lib/modules/*/modules.dep" >/dev/null; then
    (cd "$cache/debs" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
      { apt-get update -qq && (cd "$cache/debs" && apt-get download -q "$pkg" >/dev/null); }
    rm -rf "$root.tmp"
    dpkg-deb -x "$cache/debs/${pkg}"_*.deb "$root.tmp"
    rel=$(ls "$root.tmp/lib/modules")
    depmod -b "$root.tmp" "$rel"
    mv "$root.tmp" "$root"
  fi
  echo "$root"
}

# One VM row: LABEL SERIES [extra WEFT_* env for the guest].
vm_row() {
  local label=$1 series=$2 out="$results/$1" pkg root rel start rc
  shift 2
  mkdir -p "$out"
  pkg=$(resolve_kernel "$series")
  if [[ -z "$pkg" ]]; then
    printf 'label=%s\nkernel=%s\nnote=not available from apt (no linux-image-%s-amd64)\n' \
      "$label" "$series" "$series" >"$out/row.env"
    echo "run.sh: [$label] no Debian package for kernel $series"
    return
  fi
  root=$(fetch_kernel "$pkg")
  rel=$(ls "$root/lib/modules")
  local env=(--env "WEFT_STAGE2=$src/tests/kernels/guest.sh" --env "WEFT_BUILD=$build"
    --env "WEFT_SRC=$src" --env "WEFT_TESTS=$tests" --env "WEFT_MODULES_ROOT=$root")
  for e in "$@"; do env+=(--env "$e"); done
  bash "$here/mkinitramfs.sh" --modules-root "$root" --release "$rel" --out "$out/initrd.img" \
    "${env[@]}" >"$out/initramfs.log"
  echo "run.sh: [$label] booting $pkg under qemu (TCG), console: $out/console.log"
  start=$(date +%s)
  rc=0
  timeout "$timeout" qemu-system-x86_64 -accel tcg -cpu max -m "$memory" -smp 1 \
    -display none -monitor none -serial stdio -no-reboot -nic none \
    -kernel "$root/boot/vmlinuz-$rel" -initrd "$out/initrd.img" \
    -append "console=ttyS0 panic=-1 loglevel=4" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$out,mount_tag=results,security_model=none,multidevs=remap" \
    </dev/null >"$out/console.log" 2>&1 || rc=$?
  local secs=$(($(date +%s) - start)) note=""
  [[ $rc -eq 124 ]] && note="timed out after ${timeout}s (see console.log)"
  [[ $rc -ne 0 && $rc -ne 124 ]] && note="qemu exit $rc (see console.log)"
  printf 'label=%s\nkernel=%s\nseconds=%s\nnote=%s\n' "$label" "$rel" "$secs" "$note" \
    >"$out/row.env"
  echo "run.sh: [$label] done in ${secs}s: $(grep -E 'tests passed|tests failed' "$out/ctest.txt" 2>/dev/null || echo "${note:-no ctest summary}")"
}

host_row() {
  local out="$results/host" start
  mkdir -p "$out"
  echo "run.sh: [host] the host's own kernel $(uname -r), no VM"
  start=$(date +%s)
  "$here/suite.sh" --build "$build" --out "$out" --tests "$tests" >"$out/console.log" 2>&1 || true
  printf 'label=host\nseconds=%s\n' "$(($(date +%s) - start))" >"$out/row.env"
  echo "run.sh: [host] done in $(($(date +%s) - start))s"
}

rows=()
for r in $rows_wanted; do
  case "$r" in
    host) host_row ;;
    *-cgroup1) vm_row "$r" "${r%-cgroup1}" WEFT_CGROUP=v1 ;;
    [0-9]*) vm_row "$r" "$r" ;;
    *) echo "run.sh: unknown row '$r' (host, a series like 6.1, or SERIES-cgroup1)" >&2; exit 2 ;;
  esac
  rows+=("$results/$r")
done

python3 "$here/table.py" "${rows[@]}" | tee "$results/table.md"
total=$(($(date +%s) - t0))
echo "Total: $((total / 60)) min $((total % 60)) s (results: $results)" | tee -a "$results/table.md"
