#!/bin/bash
# Builds Weft's three container images with podman and runs each once:
#
#   bash packaging/build-images.sh
#
#   localhost/weft/weftd:VERSION       weftd (control plane), user 65532
#   localhost/weft/ztunnel:VERSION     ztunnel (data plane)
#   localhost/weft/weft-agent:VERSION  weft-agent, weft-cni, weftctl and the dashboard's page
#
# VERSION is the chart's appVersion (helm/Chart.yaml), which the binaries must report too; the
# names are the chart's default image repositories (helm/values.yaml).
#
# How: (1) the five binaries and the dashboard's page are built on this host (Debian 12, root or
# not) in $WEFT_IMAGE_BUILD_DIR (default build-images/, RelWithDebInfo as the tests run, the
# shared ccache reused) and stripped; (2) packaging/runtime-debs.sh lists the Debian packages
# whose libraries each image's binaries load; (3) mmdebstrap makes one Debian 12 root filesystem
# per image from Debian's archive (the essential set plus those packages; no apt, no docs, man
# pages or locales), imported as localhost/weft/base-NAME:VERSION; nothing comes from an image
# registry; (4) podman builds packaging/Containerfile's three stages on those bases; (5) smoke
# tests: each binary prints its version in its image, ztunnel serves /healthz/ready with a local
# config and certificates (in a container without network, probed from the host through its
# network namespace), weftctl dashboard in the weft-agent image serves its page; (6) sizes.
#
# Needs: Debian 12, podman, mmdebstrap (apt-get install podman mmdebstrap), curl, nsenter; the
# build's own tools (bash scripts/deps.sh). Not part of .ci/run. Environment:
#   WEFT_IMAGE_BUILD_DIR   build directory (default <repo>/build-images)
#   WEFT_DEBIAN_MIRROR     Debian mirror (default http://deb.debian.org/debian)
#   WEFT_IMAGE_JOBS        ninja -j for the build (default: ninja's)
#   WEFT_PODMAN_RUN_OPTS   options for the smoke tests' `podman run` (default: probed, see below)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${WEFT_IMAGE_BUILD_DIR:-$repo/build-images}
mirror=${WEFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
start=$(date +%s)
step() { printf '\n==> [%3ss] %s\n' "$(($(date +%s) - start))" "$*"; }
die() { echo "build-images: $*" >&2; exit 1; }

# ---- checks -------------------------------------------------------------------------------
# The binaries are built here and run on Debian 12's libraries in the images: same release.
# shellcheck source=/dev/null
. /etc/os-release
if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
  die "needs a Debian 12 host (the binaries built here run on Debian 12's libraries); this is ${PRETTY_NAME:-unknown}"
fi
for tool in podman mmdebstrap cmake ninja curl nsenter dpkg ldd; do
  command -v "$tool" > /dev/null || die "$tool is missing (apt-get install podman mmdebstrap; bash scripts/deps.sh)"
done
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$repo/helm/Chart.yaml")
[ -n "$version" ] || die "no appVersion in helm/Chart.yaml"

# What these names pointed to before this run: removed at the end if nothing names them then.
old_ids=()
for name in weftd ztunnel weft-agent base-weftd base-ztunnel base-weft-agent; do
  id=$(podman image inspect --format '{{.Id}}' "localhost/weft/$name:$version" 2>/dev/null) &&
    old_ids+=("$id")
done

# ---- 1. binaries and page -------------------------------------------------------------------
step "building weftd, ztunnel, weft-agent, weft-cni, weftctl and the dashboard's page in $build"
launcher=()
command -v ccache > /dev/null &&
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
[ -f "$build/build.ninja" ] ||
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" > /dev/null
# shellcheck disable=SC2086
ninja -C "$build" ${WEFT_IMAGE_JOBS:+-j $WEFT_IMAGE_JOBS} weftd ztunnel weft-agent weft-cni weftctl weft_dashboard_web
[ -f "$build/web/dashboard/dist/index.html" ] ||
  die "the dashboard's page was not built (needs node and npm: bash scripts/deps.sh)"

ctx="$build/images"
rm -rf "$ctx"
mkdir -p "$ctx"
install -m 0755 -s "$build/controlplane/weftd/weftd" "$build/ztunnel/app/ztunnel" \
  "$build/agent/weft-agent" "$build/cni/weft-cni" "$build/cli/weftctl" "$ctx/"
cp -r "$build/web/dashboard/dist" "$ctx/dashboard"
cp "$repo/packaging/Containerfile" "$ctx/"
for bin in weftd ztunnel weft-agent weftctl; do
  got=$("$ctx/$bin" --version)
  [ "$got" = "$bin $version" ] || die "$bin --version says \"$got\", the chart's appVersion is $version"
done

# ---- 2. runtime packages per image ------------------------------------------------------------
step "runtime packages (packaging/runtime-debs.sh)"
# (weft-cni is static: it runs on the host, outside the image's libraries.)
declare -A bins=([weftd]="weftd" [ztunnel]="ztunnel" [weft-agent]="weft-agent weftctl")
# Beyond the libraries: the agent's in-pod capture runs iptables(-save/-restore), and the chart's
# mount-bpffs init container runs mount from the weft-agent image.
declare -A extra=([weftd]="" [ztunnel]="" [weft-agent]="iptables mount")
declare -A debs
for image in weftd ztunnel weft-agent; do
  # shellcheck disable=SC2086
  debs[$image]=$(cd "$ctx" && sh "$repo/packaging/runtime-debs.sh" ${bins[$image]} | tr '\n' ' ')
  debs[$image]+=${extra[$image]}
  echo "$image: ${debs[$image]}"
done

# ---- 3. Debian 12 bases ---------------------------------------------------------------------
# Merged /usr by mmdebstrap's hook, not the usrmerge package (which brings perl, 46 MB). The
# downloaded .debs are kept in $ctx/debs between the three runs.
mkdir -p "$ctx/debs"
for image in weftd ztunnel weft-agent; do
  step "mmdebstrap: Debian 12 base for $image"
  # $1 in the hooks is the root filesystem (mmdebstrap's argument, not ours).
  # shellcheck disable=SC2086,SC2016
  mmdebstrap --variant=essential --quiet \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $ctx/debs /var/cache/apt/archives" \
    --customize-hook="sync-out /var/cache/apt/archives $ctx/debs" \
    --include="$(echo ${debs[$image]} | tr ' ' ',')" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    bookworm "$ctx/base-$image.tar" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb ${WEFT_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main"
  podman import --quiet "$ctx/base-$image.tar" "localhost/weft/base-$image:$version" > /dev/null
  rm -f "$ctx/base-$image.tar"
done
rm -rf "$ctx/debs"

# ---- 4. images --------------------------------------------------------------------------------
for image in weftd ztunnel weft-agent; do
  step "podman build --target $image -t localhost/weft/$image:$version"
  podman build --quiet --build-arg "VERSION=$version" --target "$image" \
    -t "localhost/weft/$image:$version" -f "$ctx/Containerfile" "$ctx" > /dev/null
done

# ---- 5. smoke tests ---------------------------------------------------------------------------
# A host without CAP_SYS_RESOURCE cannot give a container podman's default rlimits, and crun
# refuses a hybrid cgroup v1/v2 hierarchy (runc takes it): the first option set that runs the
# weftd image is used, and said.
if [ -n "${WEFT_PODMAN_RUN_OPTS+set}" ]; then
  run_opts=$WEFT_PODMAN_RUN_OPTS
else
  run_opts=none
  for opts in "" "--runtime runc" \
      "--runtime runc --ulimit nofile=1024:$(ulimit -Hn) --ulimit nproc=4096:4096" \
      "--ulimit nofile=1024:$(ulimit -Hn) --ulimit nproc=4096:4096"; do
    # shellcheck disable=SC2086
    if podman run --rm $opts "localhost/weft/weftd:$version" --version > /dev/null 2>&1; then
      run_opts=$opts
      break
    fi
  done
  [ "$run_opts" != none ] || die "podman cannot run a container here: $(podman run --rm "localhost/weft/weftd:$version" --version 2>&1 | tail -1)"
  [ -z "$run_opts" ] || echo "podman run needs here: $run_opts (set WEFT_PODMAN_RUN_OPTS to choose)"
fi
# shellcheck disable=SC2206
run=(podman run --rm $run_opts)

step "smoke: each binary prints its version in its image"
check_version() {  # IMAGE BINARY
  local got
  got=$("${run[@]}" --entrypoint "/usr/local/bin/$2" "localhost/weft/$1:$version" --version)
  [ "$got" = "$2 $version" ] || die "$2 in localhost/weft/$1 says \"$got\""
  echo "localhost/weft/$1:$version: $got"
}
check_version weftd weftd
check_version ztunnel ztunnel
check_version weft-agent weft-agent
check_version weft-agent weftctl
# weft-cni answers as a container runtime asks it (CNI_COMMAND=VERSION, CNI spec 1.0).
cni=$("${run[@]}" --entrypoint /usr/local/bin/weft-cni -e CNI_COMMAND=VERSION \
  "localhost/weft/weft-agent:$version" < /dev/null)
case "$cni" in *'"1.0.0"'*) echo "localhost/weft/weft-agent:$version: weft-cni VERSION: $cni" ;;
  *) die "weft-cni in localhost/weft/weft-agent answered VERSION with \"$cni\"" ;; esac
[ "$("${run[@]}" --entrypoint /usr/bin/id "localhost/weft/weftd:$version" -u)" = 65532 ] ||
  die "weftd's image does not run as uid 65532"

# Runs IMAGE detached (with "${opts[@]}") without network (loopback only), waits until `curl` of URL inside its
# network namespace answers 200, prints the body's first line.
probe() {  # NAME IMAGE URL ARGS...
  local name=$1 image=$2 url=$3 pid body
  shift 3
  "${run[@]}" -d --name "$name" --network none "${opts[@]}" "$image" "$@" > /dev/null
  for _ in $(seq 100); do
    pid=$(podman inspect --format '{{.State.Pid}}' "$name" 2>/dev/null || echo 0)
    if [ "$pid" != 0 ] && body=$(nsenter -t "$pid" -n curl -sSf -m 2 "$url" 2>/dev/null); then
      podman stop -t 2 "$name" > /dev/null
      echo "$url: ${body%%$'\n'*}"
      return 0
    fi
    sleep 0.2
  done
  podman logs "$name" >&2 || true
  podman stop -t 2 "$name" > /dev/null 2>&1 || true
  die "$image: $url never answered"
}

step "smoke: ztunnel serves readiness with a local config"
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"; podman rm -f "weft-smoke-zt-$$" "weft-smoke-dash-$$" > /dev/null 2>&1 || true' EXIT
"$ctx/weftctl" dev-certs --dir "$smoke/certs" default/smoke > /dev/null
printf 'version: "smoke-1"\ntrustDomain: cluster.local\n' > "$smoke/mesh.yaml"
opts=(-v "$smoke:/smoke:ro")
probe "weft-smoke-zt-$$" "localhost/weft/ztunnel:$version" http://127.0.0.1:15021/healthz/ready \
  --config /smoke/mesh.yaml --certs /smoke/certs --readiness 127.0.0.1:15021 --workers 1

step "smoke: weftctl dashboard in the weft-agent image serves its page"
opts=(--entrypoint /usr/local/bin/weftctl)
probe "weft-smoke-dash-$$" "localhost/weft/weft-agent:$version" http://127.0.0.1:8084/ \
  dashboard --address 127.0.0.1 --port 8084 --prometheus http://127.0.0.1:1 --weftd 127.0.0.1:1

for id in "${old_ids[@]}"; do
  if [ "$(podman image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
    podman rmi "$id" > /dev/null 2>&1 || true
  fi
done

# ---- 6. sizes ---------------------------------------------------------------------------------
step "images"
for image in weftd ztunnel weft-agent; do
  bytes=$(podman image inspect --format '{{.Size}}' "localhost/weft/$image:$version")
  awk -v n="localhost/weft/$image:$version" -v b="$bytes" 'BEGIN { printf "%-36s %6.1f MB\n", n, b / 1e6 }'
done
echo "built and smoke-tested in $(($(date +%s) - start)) s"
