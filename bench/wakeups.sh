#!/usr/bin/env bash
# Syscalls and context switches per request of the two ztunnels on the istio scenario (1 KiB
# echo at 1,000 requests/s over keep-alive HTTP/1.1, load pod on node0 -> echo on node1: two
# ztunnels on the path), for Weft eBPF L4 (`ebpf`) and L7 (`ebpf-l7`). Issue 16's measurement.
#
# Everything is summed over both ztunnels. It runs the suite itself (bench/run.sh, eBPF mode and the istio scenario only, a longer
# measured phase) and, while each case runs, samples both ztunnels of that mesh:
#   - CPU time (utime + stime, /proc/<pid>/stat);
#   - context switches of every ztunnel thread (/proc/<pid>/task/*/status, voluntary and
#     involuntary), summed and per thread name;
#   - syscalls, by `perf stat` on the syscall tracepoints (all, EAGAIN returns, and by name),
#     over the same WINDOW seconds. Not strace: ptrace stops the tracee at every syscall, which
#     slows it enough to change how many events each epoll_wait returns.
# "Per request" divides by RPS x WINDOW (the suite's own line says whether the rate held).
#
#   sudo bash bench/wakeups.sh [--connections N] [--window S] [--rps R]
#   (env: BUILD_DIR as bench/run.sh; WEFT_BIN_DIR=DIR runs the ztunnel, weftd and weft-agent
#   found there, e.g. an older ztunnel for a before/after comparison. The suite's own report
#   lands in bench/results/ as with bench/run.sh.)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
conns=64
window=8
rps=1000
warmup=5 # the suite's istio warm-up (full mode)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --connections) conns="$2"; shift 2 ;;
    --window) window="$2"; shift 2 ;;
    --rps) rps="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench/wakeups.sh: unknown flag $1 (see --help)" >&2; exit 1 ;;
  esac
done
if [[ $EUID -ne 0 ]]; then
  echo "bench/wakeups.sh: needs root (the suite's meshes, perf on ztunnel)" >&2
  exit 1
fi
command -v perf >/dev/null || { echo "bench/wakeups.sh: perf is missing (linux-perf)" >&2; exit 1; }
syscalls=(read recvfrom recvmsg readv write sendmsg sendto writev epoll_wait epoll_ctl splice
  futex getsockopt setsockopt)

tmp="$(mktemp -d /tmp/weft-wakeups.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
work="$tmp/work"
seconds=$((window + 6))

# The ztunnels of this run's mesh: their handoff socket lies under our work dir.
ztunnel_pids() {
  local p
  for p in $(pgrep -x ztunnel || true); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$work/"; then echo "$p"; fi
  done
}

# "tid comm voluntary involuntary" for every thread of the given pids.
snapshot() {
  local p t
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      awk -v tid="${t##*/}" -v comm="$(tr ' ' '_' <"$t/comm" 2>/dev/null)" '
        /^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2}
        END {print tid, comm, v+0, n+0}' "$t/status" 2>/dev/null || true
    done
  done
}

# utime + stime (clock ticks) of the given pids, all threads.
cputicks() {
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

sample() { # $1: case key
  local key="$1" pids
  sleep $((warmup + 1))
  mapfile -t pids < <(ztunnel_pids)
  if [[ ${#pids[@]} -ne 2 ]]; then
    echo "bench/wakeups.sh: expected 2 ztunnels of this run, found ${#pids[@]}" >&2
    return
  fi
  # One window: context switches from /proc before and after, syscalls counted by perf on the
  # syscall tracepoints (in-kernel counters: the tracee runs at full speed, unlike strace).
  local events=(-e raw_syscalls:sys_enter -e raw_syscalls:sys_exit --filter 'ret == -11')
  local sc
  for sc in "${syscalls[@]}"; do events+=(-e "syscalls:sys_enter_$sc"); done
  local cpu0 cpu1
  cpu0="$(cputicks "${pids[@]}")"
  snapshot "${pids[@]}" >"$tmp/cs0-$key"
  perf stat -x, -o "$tmp/perf-$key" "${events[@]}" -p "$(IFS=,; echo "${pids[*]}")" \
    -- sleep "$window" 2>/dev/null
  snapshot "${pids[@]}" >"$tmp/cs1-$key"
  cpu1="$(cputicks "${pids[@]}")"
  # Per thread name (both ztunnels), per request: which threads wake.
  local threads vol invol
  threads="$(awk -v reqs=$((rps * window)) '
    NR == FNR { v0[$1] = $3; n0[$1] = $4; next }
    { dv[$2] += $3 - v0[$1]; dn[$2] += $4 - n0[$1]; V += $3 - v0[$1]; N += $4 - n0[$1] }
    END {
      printf "%d %d", V, N
      for (c in dv) if ((dv[c] + dn[c]) / reqs >= 0.01) printf " %s:%.2f", c, (dv[c] + dn[c]) / reqs
    }' "$tmp/cs0-$key" "$tmp/cs1-$key")"
  read -r vol invol _ <<<"$threads"
  echo "$key: context switches per request by thread: ${threads#* * }" \
    "(ztunnel: $(readlink "/proc/${pids[0]}/exe"))" >>"$tmp/threads"
  local cpu_us=$(((cpu1 - cpu0) * 1000000 / $(getconf CLK_TCK) / (rps * window)))
  awk -F, -v key="$key" -v reqs=$((rps * window)) -v vol="$vol" -v invol="$invol" -v cpu="$cpu_us" '
    # perf stat -x,: count,unit,event,...
    $1 ~ /^[0-9]+$/ {
      if ($3 == "raw_syscalls:sys_enter") total = $1
      else if ($3 == "raw_syscalls:sys_exit") eagain = $1
      else { name = $3; sub(/^syscalls:sys_enter_/, "", name); by[name] = $1; named += $1 }
    }
    END {
      printf "| %s | %d | %.2f | %.2f | %.2f | %.2f |", key, cpu, vol / reqs, invol / reqs, total / reqs, eagain / reqs
      out = ""
      for (s in by) if (by[s] / reqs >= 0.01) out = out (out == "" ? " " : ", ") sprintf("%s %.2f", s, by[s] / reqs)
      if ((total - named) / reqs >= 0.01) out = out sprintf(", other %.2f", (total - named) / reqs)
      print out " |"
    }' "$tmp/perf-$key" >>"$tmp/table"
}

echo "| case | ztunnel CPU µs / req | voluntary cs / req | involuntary cs / req | syscalls / req | EAGAIN / req | by name (per request) |" >"$tmp/table"
echo "|---|---:|---:|---:|---:|---:|---|" >>"$tmp/table"

set +e
bash "$repo/bench/run.sh" --modes ebpf --scenarios istio \
  --istio-protocols http1 --istio-connections "$conns" --istio-rps "$rps" \
  --istio-seconds "$seconds" --work-dir "$work" 2>&1 |
  while IFS= read -r line; do
    echo "$line" >&2
    if [[ "$line" =~ istio\ http1:.*connections,\ (ebpf(-l7)?)\ \( ]]; then
      sample "${BASH_REMATCH[1]}"
    fi
  done
set -e
echo
echo "ztunnels (both nodes) on the istio scenario, http1, $conns connections, $rps rps," \
  "$window s windows ($(git -C "$repo" rev-parse --short HEAD)):"
cat "$tmp/table"
echo
cat "$tmp/threads" 2>/dev/null || true
