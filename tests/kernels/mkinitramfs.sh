#!/usr/bin/env bash
# Builds the kernel matrix's initramfs: a static busybox, the kernel's own modules for a
# virtio-9p root (resolved with kmod from the kernel package's modules.dep), and init.sh as
# /init, which mounts the host's root file system read-only over 9p under a tmpfs overlay and
# switches to it (tests/kernels/README: "How a guest boots").
#
#   mkinitramfs.sh --modules-root DIR --release RELEASE --out FILE [--busybox PATH] [--env K=V]...
#
# --modules-root: the root that holds lib/modules/RELEASE (an unpacked linux-image package,
# depmod already run); --env lines are written to /weft.env for init.sh. Exit 2 on bad
# arguments, 1 when a module or tool is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "mkinitramfs.sh: $*" >&2
  exit 1
}

modules_root="" release="" out="" busybox=/bin/busybox
env_lines=()
env_re=$'^[A-Z_][A-Z0-9_]*=[^\'\n]*$'
# The modules a 9p root needs; builtins (virtio_pci is built in on some configs) are fine.
modules=(virtio_pci 9pnet_virtio 9p overlay)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --modules-root) modules_root=${2:?}; shift 2 ;;
    --release) release=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --busybox) busybox=${2:?}; shift 2 ;;
    --env)
      # /weft.env holds NAME='VALUE' lines: any value but one with a single quote or newline.
      [[ "${2:-}" =~ $env_re ]] || {
        echo "mkinitramfs.sh: --env wants NAME=VALUE without single quotes or newlines: '${2:-}'" >&2
        exit 2
      }
      env_lines+=("$2"); shift 2 ;;
    -h | --help) usage ;;
    *) echo "mkinitramfs.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -n "$modules_root" && -n "$release" && -n "$out" ]] || usage
moddir="$modules_root/lib/modules/$release"
[[ -d "$moddir" ]] || die "no module directory $moddir"
[[ -s "$moddir/modules.dep" ]] || die "$moddir has no modules.dep (run: depmod -b $modules_root $release)"
[[ -x "$busybox" ]] || die "no busybox at $busybox (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
  die "$busybox is dynamically linked; the initramfs has no libraries (apt-get install busybox-static)"
fi
command -v modprobe >/dev/null || die "no modprobe (apt-get install kmod)"
command -v cpio >/dev/null || die "no cpio (apt-get install cpio)"

work=$(mktemp -d /tmp/weft-initramfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,lower,rw,newroot,results,lib/modules}
cp "$busybox" "$work/bin/busybox"
cp "$here/init.sh" "$work/init"
chmod 755 "$work/init"

# kmod resolves the load order; decompress so busybox insmod needs no xz/zstd support.
: >"$work/modules.order"
for m in "${modules[@]}"; do
  deps=$(modprobe -d "$modules_root" -S "$release" --show-depends "$m" 2>&1) ||
    die "module $m: $deps"
  while read -r kind path _; do
    [[ "$kind" == insmod ]] || continue
    name=$(basename "$path")
    name=${name%.xz}
    name=${name%.zst}
    name=${name%.gz}
    grep -qx "$name" "$work/modules.order" && continue
    case "$path" in
      *.xz) xz -dc "$path" >"$work/lib/modules/$name" ;;
      *.zst) zstd -qdc "$path" >"$work/lib/modules/$name" ;;
      *.gz) gzip -dc "$path" >"$work/lib/modules/$name" ;;
      *) cp "$path" "$work/lib/modules/$name" ;;
    esac
    echo "$name" >>"$work/modules.order"
  done <<<"$deps"
done
for kv in "${env_lines[@]}"; do
  printf "%s='%s'\n" "${kv%%=*}" "${kv#*=}"
done >"$work/weft.env"

(cd "$work" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs.sh: $out ($(wc -l <"$work/modules.order") modules: $(tr '\n' ' ' <"$work/modules.order"))"
