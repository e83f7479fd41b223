#!/bin/busybox sh
# shellcheck shell=dash disable=SC1091
# /init of the kernel matrix's initramfs (built by mkinitramfs.sh): loads the 9p and overlay
# modules, mounts the host's root file system (9p tag "hostroot", read-only) as the lower layer
# of an overlay whose upper layer is a tmpfs, mounts the results share (9p tag "results",
# writable) at /weft-results in it, and switches to it, running $WEFT_STAGE2 (guest.sh).
# Any failure powers the machine off after printing why (the host sees no summary and says so).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
  echo "weft-init: FAILED: $*"
  echo o >/proc/sysrq-trigger
  sleep 30
}

set -a
. /weft.env
set +a
while read -r m; do
  insmod "/lib/modules/$m" || fail "insmod $m"
done </modules.order
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro,cache=loose" hostroot /lower || fail "mount 9p hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "mount overlay"
mkdir -p /newroot/weft-results
mount -t 9p -o "$opts" results /newroot/weft-results || fail "mount 9p results"
[ -x "/newroot$WEFT_STAGE2" ] || fail "no stage 2 at $WEFT_STAGE2 in the host root"
umount /proc /sys
mount --move /dev /newroot/dev || umount /dev
echo "weft-init: switching to the 9p root, running $WEFT_STAGE2"
exec switch_root /newroot "$WEFT_STAGE2"
