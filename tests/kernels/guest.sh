#!/bin/bash
# Stage 2 of a kernel matrix guest, PID 1 on the overlay root init.sh switched to: mounts what
# a Weft node has (proc, sysfs, devpts, cgroup v2, bpffs, tmpfs on /tmp and /run), makes the
# kernel package's modules loadable, runs suite.sh into the results share and powers off.
# Environment (from /weft.env): WEFT_BUILD, WEFT_TESTS, WEFT_MODULES_ROOT, WEFT_SRC, and
# WEFT_CGROUP=v1 for a node with only cgroup v1 hierarchies mounted.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8

poweroff_now() {
  sync
  echo o >/proc/sysrq-trigger
  sleep 60 2>/dev/null
}
trap poweroff_now EXIT

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /var/run
if [[ "${WEFT_CGROUP:-v2}" == v1 ]]; then
  # A cgroup v1 node (legacy hierarchy, no cgroup2 mounted anywhere): the probe must choose
  # iptables and the eBPF tests skip with the reason.
  mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup
  for c in cpu,cpuacct memory pids devices freezer net_cls; do
    mkdir -p "/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
  done
else
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
release=$(uname -r)
mkdir -p /lib/modules
ln -sfn "$WEFT_MODULES_ROOT/lib/modules/$release" "/lib/modules/$release"
hostname weft-kmatrix
ip link set lo up
echo "weft-guest: Linux $release, $(nproc) CPU, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"

# bash as PID 1 reaps re-parented children while it waits for the suite.
"$WEFT_SRC/tests/kernels/suite.sh" --build "$WEFT_BUILD" --out /weft-results \
  --tests "$WEFT_TESTS" 2>&1 &
wait $!
echo "weft-guest: suite exit $?; powering off"
