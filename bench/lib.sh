# Shared by bench/run.sh and bench/dataplane.sh (sourced, not run).
#
# weft_bench_build SCRIPT TARGET...: builds the targets and sets $build to the build directory:
# $BUILD_DIR with cmake + ninja when set (BUILD_TYPE is passed to cmake, default
# RelWithDebInfo), else ./build through scripts/build.sh.
weft_bench_build() {
  local script="$1"
  shift
  if [[ -n "${BUILD_DIR:-}" ]]; then
    build="$(realpath -m "$BUILD_DIR")"
    echo "$script: building $* in $build" >&2
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
    ninja -C "$build" "$@" >&2
  else
    build="$PWD/build"
    echo "$script: building $* with scripts/build.sh" >&2
    scripts/build.sh "$@" >&2
  fi
}

# weft_bench_export_run_info SCRIPT ARG...: exports WEFT_BENCH_INVOCATION (the command as typed)
# and WEFT_BENCH_REVISION (the git revision, marked when the tree has uncommitted changes).
weft_bench_export_run_info() {
  local invocation="bash $1"
  shift
  for a in "$@"; do invocation+=" $(printf '%q' "$a")"; done
  export WEFT_BENCH_INVOCATION="$invocation"
  local rev
  if rev="$(git rev-parse --short HEAD 2>/dev/null)"; then
    git diff --quiet HEAD 2>/dev/null || rev+=" (with uncommitted changes)"
    export WEFT_BENCH_REVISION="$rev"
  fi
}
